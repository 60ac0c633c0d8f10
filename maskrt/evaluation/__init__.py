"""How good a model is: COCO AP on any backend (:mod:`~maskrt.evaluation.coco`) and verification of one backend
against another, detection by detection (:mod:`~maskrt.evaluation.verify`)."""
