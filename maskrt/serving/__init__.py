"""Serving at scale: Triton model repositories (``maskrt triton``), a Triton server here (``maskrt serve``) and
its client (:class:`~maskrt.serving.client.RemotePredictor`, ``maskrt predict --url``).

The room sits above inference (and below the CLI): nothing lower imports it. Modules:

* ``contract``: the served inputs and outputs, and detections to and from them (masks as COCO RLE);
* ``config``: Triton config.pbtxt text from plain values;
* ``meta``: a model file's maskrt metadata without running it;
* ``repository``: the model repository for stock Triton servers (ensemble, Kubernetes manifest, README);
* ``tritonserver``: the nvidia-pytriton server build and what it needs to start here;
* ``server``: ``maskrt serve`` (the served repository, start, readiness, stop);
* ``wire`` and ``worker``: the pipe between the python backend and the process that runs the model;
* ``client``: :class:`RemotePredictor`;
* ``backend_models``: the python-backend ``model.py`` files copied into repositories (never imported).
"""
