/* maskrt explain roi-align: RoI Pool and RoI Align computed live on an embedded feature map.
 *
 * The page's state arrives as JSON in #roi-align-input (see maskrt/explain/roi_align.py). The two ops below
 * reproduce maskrt.ops.roi_align / maskrt.ops.roi_pool (torchvision's CPU kernels) step by step, in float32:
 * every arithmetic result that the PyTorch code rounds to float32 is rounded here with Math.fround, in the
 * same order. That matters beyond the last bits: coordinates decide which cells a bin covers, whether a sample
 * is outside the map and how many samples the adaptive grid takes, and float64 would decide some of those
 * differently (ceil(7 * (29 / 7)) is 29 in float32 but 30 in float64). With it the outputs equal maskrt's.
 *
 * What was computed for the current box is written as JSON ({"output": [C][PH][PW]}) into #roi-align-output
 * and #roi-pool-output: on load for the initial state, then after every change.
 */
(function () {
  "use strict";

  // ============================================================================================ the ops
  const f32 = Math.fround;

  /* One axis of RoI Align's sampling grid, as maskrt.ops.roi_align._axis_samples: for bin p and sample i,
   * raw = (start + p*bin) + ((i + 0.5)*bin) / grid. A sample with raw < -1 or raw > size is outside the map
   * (weight 0, but it still counts towards the average); otherwise it is clamped to >= 0, and one at or past
   * the last cell reads that cell only. Returns pooled*grid samples, bin-major. */
  function axisSamples(start, bin, pooled, grid, size) {
    const out = [];
    for (let p = 0; p < pooled; p++) {
      const binStart = f32(start + f32(p * bin));
      for (let i = 0; i < grid; i++) {
        const raw = f32(binStart + f32(f32((i + 0.5) * bin) / grid));
        const inside = raw >= -1 && raw <= size;
        let pos = Math.min(Math.max(raw, 0), size);
        let low = Math.floor(pos);
        let high;
        if (low >= size - 1) {
          low = size - 1;
          high = low;
          pos = low;
        } else {
          high = low + 1;
        }
        const frac = f32(pos - low);
        out.push({
          raw: raw, pos: pos, inside: inside, low: low, high: high,
          wLow: inside ? f32(1 - frac) : 0, wHigh: inside ? frac : 0,
        });
      }
    }
    return out;
  }

  /* RoI Align's geometry for one box (image pixels): the RoI in map cells, bin sizes, grid, samples. */
  function alignGeometry(box, scale, ph, pw, samplingRatio, aligned, height, width) {
    const b = box.map(f32);
    const offset = aligned ? 0.5 : 0;
    const x0 = f32(f32(b[0] * scale) - offset);
    const y0 = f32(f32(b[1] * scale) - offset);
    let roiW = f32(f32(f32(b[2] * scale) - offset) - x0);
    let roiH = f32(f32(f32(b[3] * scale) - offset) - y0);
    if (!aligned) {
      // The legacy convention: a RoI is never smaller than one cell.
      roiW = Math.max(roiW, 1);
      roiH = Math.max(roiH, 1);
    }
    const binH = f32(roiH / ph);
    const binW = f32(roiW / pw);
    // Adaptive grid: ceil(roi_size / output_size) per axis, i.e. ceil of the bin size (both float32).
    const gh = samplingRatio > 0 ? samplingRatio : Math.max(0, Math.ceil(binH));
    const gw = samplingRatio > 0 ? samplingRatio : Math.max(0, Math.ceil(binW));
    return {
      x0: x0, y0: y0, roiW: roiW, roiH: roiH, binH: binH, binW: binW, gh: gh, gw: gw, ph: ph, pw: pw,
      ys: axisSamples(y0, binH, ph, gh, height), xs: axisSamples(x0, binW, pw, gw, width),
    };
  }

  /* The four bilinear taps of a sample, in the kernel's order: (low,low), (low,high), (high,low), (high,high). */
  function taps(sy, sx) {
    return [
      { row: sy.low, col: sx.low, w: f32(sy.wLow * sx.wLow) },
      { row: sy.low, col: sx.high, w: f32(sy.wLow * sx.wHigh) },
      { row: sy.high, col: sx.low, w: f32(sy.wHigh * sx.wLow) },
      { row: sy.high, col: sx.high, w: f32(sy.wHigh * sx.wHigh) },
    ];
  }

  /* The interpolated value of one sample in one channel (a Float32Array of height*width). */
  function sampleValue(data, width, sy, sx) {
    const t = taps(sy, sx);
    let v = f32(data[t[0].row * width + t[0].col] * t[0].w);
    for (let k = 1; k < 4; k++) v = f32(v + f32(data[t[k].row * width + t[k].col] * t[k].w));
    return v;
  }

  /* RoI Align of every channel: [C][PH][PW]. Avg sums the samples row by row and divides by gh*gw; max keeps
   * the largest interpolated sample. A bin without samples (adaptive grid of an empty RoI) is 0. */
  function roiAlign(feat, g, mode) {
    const count = Math.max(g.gh * g.gw, 1);
    const perBin = g.gh * g.gw;
    // The taps (cell index, weight) of every sample, found once and shared by all channels, in the order the
    // kernel visits them: bin by bin, and within a bin sample rows, then sample columns.
    const n = g.ph * g.pw * perBin;
    const index = new Int32Array(4 * n);
    const weight = new Float32Array(4 * n);
    let k = 0;
    for (let py = 0; py < g.ph; py++) for (let px = 0; px < g.pw; px++) {
      for (let iy = 0; iy < g.gh; iy++) {
        const sy = g.ys[py * g.gh + iy];
        for (let ix = 0; ix < g.gw; ix++) {
          for (const t of taps(sy, g.xs[px * g.gw + ix])) {
            index[k] = t.row * feat.W + t.col;
            weight[k] = t.w;
            k++;
          }
        }
      }
    }
    const out = [];
    for (let c = 0; c < feat.C; c++) {
      const data = feat.data[c];
      const rows = [];
      let k = 0;
      for (let py = 0; py < g.ph; py++) {
        const row = [];
        for (let px = 0; px < g.pw; px++) {
          let acc = 0;
          for (let i = 0; i < perBin; i++, k += 4) {
            // w1*v1 + w2*v2 + w3*v3 + w4*v4, each step rounded to float32 (as sampleValue).
            let v = f32(data[index[k]] * weight[k]);
            v = f32(v + f32(data[index[k + 1]] * weight[k + 1]));
            v = f32(v + f32(data[index[k + 2]] * weight[k + 2]));
            v = f32(v + f32(data[index[k + 3]] * weight[k + 3]));
            if (i === 0) acc = v;
            else acc = mode === "avg" ? f32(acc + v) : Math.max(acc, v);
          }
          if (mode === "avg") acc = f32(acc / count);
          row.push(acc);
        }
        rows.push(row);
      }
      out.push(rows);
    }
    return out;
  }

  /* torch.sign(x) * torch.floor(|x| + 0.5) in float32 (the +0.5 can round up, e.g. 0.49999997 -> 1). */
  function roundHalfAway(x) {
    const a = Math.floor(f32(Math.abs(x) + 0.5));
    return x < 0 ? -a : a;
  }

  /* RoI Pool's bin edges along one axis: bin p covers cells [floor(p*bin), ceil((p+1)*bin)) + start, clipped
   * to [0, size]; bin = length / pooled in float32 (maskrt.ops.roi_pool._bin_edges). */
  function poolEdges(start, length, pooled, size) {
    const bin = f32(length / pooled);
    const lo = [];
    const hi = [];
    const clip = (v) => Math.min(Math.max(v, 0), size);
    for (let p = 0; p < pooled; p++) {
      lo.push(clip(Math.floor(f32(p * bin)) + start));
      hi.push(clip(Math.ceil(f32((p + 1) * bin)) + start));
    }
    return { lo: lo, hi: hi, bin: bin };
  }

  /* RoI Pool's geometry: the box's corners rounded to cells, the RoI at least 1x1 cell, and the bins. */
  function poolGeometry(box, scale, ph, pw, height, width) {
    const c = box.map((v) => roundHalfAway(f32(f32(v) * scale)));
    const roiW = Math.max(c[2] - c[0] + 1, 1);
    const roiH = Math.max(c[3] - c[1] + 1, 1);
    return {
      cx1: c[0], cy1: c[1], cx2: c[2], cy2: c[3], roiW: roiW, roiH: roiH, ph: ph, pw: pw,
      rows: poolEdges(c[1], roiH, ph, height), cols: poolEdges(c[0], roiW, pw, width),
    };
  }

  /* RoI Pool of every channel: {out: [C][PH][PW], arg: [C][PH][PW] flat index of the max cell or -1}. */
  function roiPool(feat, g) {
    const out = [];
    const arg = [];
    for (let c = 0; c < feat.C; c++) {
      const data = feat.data[c];
      const rows = [];
      const argRows = [];
      for (let py = 0; py < g.ph; py++) {
        const row = [];
        const argRow = [];
        const h0 = g.rows.lo[py], h1 = g.rows.hi[py];
        for (let px = 0; px < g.pw; px++) {
          const w0 = g.cols.lo[px], w1 = g.cols.hi[px];
          let best = 0;
          let where = -1;
          for (let y = h0; y < h1; y++) {
            for (let x = w0; x < w1; x++) {
              const v = data[y * feat.W + x];
              if (where < 0 || v > best) {
                best = v;
                where = y * feat.W + x;
              }
            }
          }
          row.push(best); // an empty bin stays 0
          argRow.push(where);
        }
        rows.push(row);
        argRows.push(argRow);
      }
      out.push(rows);
      arg.push(argRows);
    }
    return { out: out, arg: arg };
  }

  // ============================================================================================ the data
  const $ = (id) => document.getElementById(id);
  const input = JSON.parse($("roi-align-input").textContent);

  /* The embedded feature as float32 channels; [H][W] is taken as one channel (and answered in kind). */
  function loadFeature(nested) {
    const planar = !Array.isArray(nested[0][0]);
    const chans = planar ? [nested] : nested;
    const H = chans[0].length, W = chans[0][0].length;
    const data = chans.map((ch) => {
      const a = new Float32Array(H * W); // Float32Array stores exactly what Math.fround would give
      for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) a[y * W + x] = ch[y][x];
      return a;
    });
    const range = data.map((a) => {
      let lo = Infinity, hi = -Infinity;
      for (let i = 0; i < a.length; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i]; }
      return [lo, hi];
    });
    return { C: chans.length, H: H, W: W, data: data, planar: planar, range: range };
  }

  const feat = loadFeature(input.feature);
  const scale = input.spatial_scale;
  const stride = input.stride || 1 / scale;
  const imgH = input.image_size ? input.image_size[0] : feat.H * stride;
  const imgW = input.image_size ? input.image_size[1] : feat.W * stride;
  const channelNames = input.channels || feat.data.map((_, i) => "channel " + i);
  const image = $("roi-align-image");

  const st = {
    box: input.box.slice(),
    ph: input.output_size[0],
    pw: input.output_size[1],
    sampling: input.sampling_ratio > 0 ? input.sampling_ratio : 0,
    aligned: !!input.aligned,
    mode: input.mode,
    channel: 0,
    overlay: "both",
    background: "image",
    numbers: true,
    hover: null, // {kind: "sample", py, px, iy, ix} or {kind: "bin", py, px}
    drag: null,
  };
  let res = null; // {align: {g, out}, pool: {g, out, arg}}

  function recompute() {
    const ga = alignGeometry(st.box, scale, st.ph, st.pw, st.sampling, st.aligned, feat.H, feat.W);
    const gp = poolGeometry(st.box, scale, st.ph, st.pw, feat.H, feat.W);
    const pooled = roiPool(feat, gp);
    res = { align: { g: ga, out: roiAlign(feat, ga, st.mode) }, pool: { g: gp, out: pooled.out, arg: pooled.arg } };
    if (st.hover && st.hover.kind === "sample") st.hover = null; // the samples moved
    publish();
  }

  /* The machine-readable outputs (the page's contract with its tests). */
  function publish() {
    const shape = (o) => (feat.planar ? o[0] : o);
    $("roi-align-output").textContent = JSON.stringify({ output: shape(res.align.out) });
    $("roi-pool-output").textContent = JSON.stringify({ output: shape(res.pool.out) });
  }

  // ============================================================================================ colours
  const COLORS = {
    align: "#0aa6c8", alignFill: "rgba(10,166,200,0.28)", pool: "#f08a24",
    poolFillA: "rgba(240,138,36,0.13)", poolFillB: "rgba(240,138,36,0.26)",
    lost: "rgba(230,40,40,0.85)", added: "rgba(40,110,255,0.85)", hover: "#ff3d8b",
    inside: "#28d7f5", clamped: "#ffd23f", outside: "#ff4d4d", box: "#ffffff",
  };
  const DIVERGING = [[49, 54, 149], [116, 173, 209], [247, 247, 247], [244, 109, 67], [165, 0, 38]];
  const SEQUENTIAL = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  function ramp(stops, t) {
    const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2);
    const u = x - i;
    return stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * u));
  }

  /* Signed channels get a diverging map centred on 0 (FPN features), others a sequential one (luminance). */
  function scheme(c) {
    const r = feat.range[c];
    if (r[0] < 0 && r[1] > 0) {
      const m = Math.max(-r[0], r[1]);
      return { lo: -m, hi: m, color: (v) => ramp(DIVERGING, (v / m + 1) / 2), stops: DIVERGING };
    }
    const span = r[1] - r[0] || 1;
    return { lo: r[0], hi: r[1], color: (v) => ramp(SEQUENTIAL, (v - r[0]) / span), stops: SEQUENTIAL };
  }

  const rgb = (c) => "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")";
  const inkFor = (c) => (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 140 ? "#111" : "#fff");

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 100) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }
  const fmtN = (v, d) => (Number.isInteger(v) ? String(v) : v.toFixed(d === undefined ? 2 : d));

  // ============================================================================================ the stage
  const canvas = $("stage");
  const ctx = canvas.getContext("2d");
  const margin = Math.max(stride, 16); // image pixels shown around the feature map
  const world = {
    x0: Math.min(-margin, Math.floor(st.box[0]) - 4),
    y0: Math.min(-margin, Math.floor(st.box[1]) - 4),
    x1: Math.max(feat.W * stride, imgW) + margin,
    y1: Math.max(feat.H * stride, imgH) + margin,
  };
  world.x1 = Math.max(world.x1, Math.ceil(st.box[2]) + 4);
  world.y1 = Math.max(world.y1, Math.ceil(st.box[3]) + 4);
  const view = { k: 1, dpr: 1 };

  /* Fit the world into the stage column, at most 600 css px high; the canvas is sized for the device pixels. */
  function layoutStage() {
    const avail = Math.max(300, $("stage-wrap").clientWidth || 700);
    const ww = world.x1 - world.x0, wh = world.y1 - world.y0;
    view.k = Math.min(avail / ww, 600 / wh);
    view.dpr = window.devicePixelRatio || 1;
    canvas.style.width = Math.round(ww * view.k) + "px";
    canvas.style.height = Math.round(wh * view.k) + "px";
    canvas.width = Math.round(ww * view.k * view.dpr);
    canvas.height = Math.round(wh * view.k * view.dpr);
  }

  const px = (n) => n / view.k; // css pixels -> world units
  const mapX = (u) => (u + 0.5) * stride; // RoI Align's continuous map coordinate -> image pixels (cell centres)

  function setWorldTransform() {
    const s = view.k * view.dpr;
    ctx.setTransform(s, 0, 0, s, -world.x0 * s, -world.y0 * s);
  }

  const featureCanvases = {};
  /* The channel as a heat map, one canvas pixel per cell (drawn scaled up without smoothing). */
  function featureCanvas(c) {
    if (featureCanvases[c]) return featureCanvases[c];
    const off = document.createElement("canvas");
    off.width = feat.W;
    off.height = feat.H;
    const octx = off.getContext("2d");
    const im = octx.createImageData(feat.W, feat.H);
    const sc = scheme(c);
    const data = feat.data[c];
    for (let i = 0; i < data.length; i++) {
      const col = sc.color(data[i]);
      im.data[4 * i] = col[0];
      im.data[4 * i + 1] = col[1];
      im.data[4 * i + 2] = col[2];
      im.data[4 * i + 3] = 255;
    }
    octx.putImageData(im, 0, 0);
    featureCanvases[c] = off;
    return off;
  }

  function hatch(color) {
    const p = document.createElement("canvas");
    p.width = p.height = 8;
    const c = p.getContext("2d");
    c.strokeStyle = color;
    c.lineWidth = 1.6;
    c.beginPath();
    c.moveTo(-2, 10); c.lineTo(10, -2);
    c.moveTo(-2, 2); c.lineTo(2, -2);
    c.moveTo(6, 10); c.lineTo(10, 6);
    c.stroke();
    return ctx.createPattern(p, "repeat");
  }
  const patterns = { lost: hatch(COLORS.lost), added: hatch(COLORS.added) };

  /* Hatch the part of rectangle a that is not in rectangle b (rects as [x1, y1, x2, y2], world units). The
   * hatching is drawn in device pixels so that it looks the same at every zoom. */
  function hatchDifference(a, b, pattern) {
    if (a[2] <= a[0] || a[3] <= a[1]) return;
    ctx.save();
    setWorldTransform();
    ctx.beginPath();
    ctx.rect(a[0], a[1], a[2] - a[0], a[3] - a[1]);
    ctx.clip();
    if (b[2] > b[0] && b[3] > b[1]) {
      ctx.beginPath();
      ctx.rect(world.x0 - 1, world.y0 - 1, world.x1 - world.x0 + 2, world.y1 - world.y0 + 2);
      ctx.rect(b[0], b[1], b[2] - b[0], b[3] - b[1]);
      ctx.clip("evenodd");
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = pattern;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.restore();
  }

  const area = (r) => Math.max(r[2] - r[0], 0) * Math.max(r[3] - r[1], 0);
  const intersect = (a, b) => [Math.max(a[0], b[0]), Math.max(a[1], b[1]), Math.min(a[2], b[2]), Math.min(a[3], b[3])];

  /* The image region RoI Pool reads: its whole-cell RoI, clipped to the map. */
  function poolRegion(g) {
    const q = [g.cx1 * stride, g.cy1 * stride, (g.cx1 + g.roiW) * stride, (g.cy1 + g.roiH) * stride];
    return { q: q, clipped: intersect(q, [0, 0, feat.W * stride, feat.H * stride]) };
  }

  function strokeRect(r, color, width, dash) {
    ctx.setLineDash(dash ? dash.map(px) : []);
    ctx.strokeStyle = color;
    ctx.lineWidth = px(width);
    ctx.strokeRect(r[0], r[1], r[2] - r[0], r[3] - r[1]);
    ctx.setLineDash([]);
  }

  function dot(x, y, r, fill, stroke) {
    ctx.beginPath();
    ctx.arc(x, y, px(r), 0, 2 * Math.PI);
    if (fill) { ctx.fillStyle = fill; ctx.fill(); }
    if (stroke) { ctx.strokeStyle = stroke; ctx.lineWidth = px(1); ctx.stroke(); }
  }

  function drawBackground() {
    const mw = feat.W * stride, mh = feat.H * stride;
    ctx.fillStyle = "#3a404a"; // the zero padding of the batch, part of the map but not of the image
    ctx.fillRect(0, 0, mw, mh);
    const c = st.channel;
    if (st.background !== "feature" && image.complete && image.naturalWidth) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(image, 0, 0, imgW, imgH);
    }
    if (st.background !== "image") {
      ctx.imageSmoothingEnabled = false;
      ctx.globalAlpha = st.background === "blend" ? 0.55 : 1;
      ctx.drawImage(featureCanvas(c), 0, 0, mw, mh);
      ctx.globalAlpha = 1;
    }
    // The grid: one line per cell edge, fainter when cells are small.
    const cellPx = stride * view.k;
    ctx.strokeStyle = cellPx < 8 ? "rgba(255,255,255,0.13)" : "rgba(255,255,255,0.25)";
    ctx.lineWidth = px(1);
    ctx.beginPath();
    for (let i = 0; i <= feat.W; i++) { ctx.moveTo(i * stride, 0); ctx.lineTo(i * stride, mh); }
    for (let j = 0; j <= feat.H; j++) { ctx.moveTo(0, j * stride); ctx.lineTo(mw, j * stride); }
    ctx.stroke();
    if (cellPx >= 14) {
      // Where a cell's value sits: its centre.
      ctx.fillStyle = "rgba(255,255,255,0.45)";
      const r = px(1.3);
      ctx.beginPath();
      for (let j = 0; j < feat.H; j++) {
        for (let i = 0; i < feat.W; i++) {
          ctx.moveTo((i + 0.5) * stride + r, (j + 0.5) * stride);
          ctx.arc((i + 0.5) * stride, (j + 0.5) * stride, r, 0, 2 * Math.PI);
        }
      }
      ctx.fill();
    }
  }

  function drawPool() {
    const g = res.pool.g;
    const region = poolRegion(g);
    for (let py = 0; py < g.ph; py++) {
      for (let qx = 0; qx < g.pw; qx++) {
        const r = [g.cols.lo[qx] * stride, g.rows.lo[py] * stride, g.cols.hi[qx] * stride, g.rows.hi[py] * stride];
        if (r[2] <= r[0] || r[3] <= r[1]) continue;
        if (st.overlay === "pool") {
          // Alone, bins are filled in a checkerboard; bins that overlap (share a row or column) look darker.
          ctx.fillStyle = (py + qx) % 2 ? COLORS.poolFillA : COLORS.poolFillB;
          ctx.fillRect(r[0], r[1], r[2] - r[0], r[3] - r[1]);
        }
        strokeRect(r, "rgba(240,138,36,0.9)", 1);
      }
    }
    const box = st.box;
    hatchDifference(box, region.clipped, patterns.lost); // in the box, never read
    hatchDifference(region.clipped, box, patterns.added); // read, outside the box
    strokeRect(region.q, COLORS.pool, 2, [6, 4]);
    // The cell each bin takes its maximum from (current channel).
    const arg = res.pool.arg[st.channel];
    const sz = Math.max(stride * (st.overlay === "pool" ? 0.5 : 0.3), px(4));
    for (let py = 0; py < g.ph; py++) {
      for (let qx = 0; qx < g.pw; qx++) {
        const a = arg[py][qx];
        if (a < 0) continue;
        const cx = ((a % feat.W) + 0.5) * stride, cy = (Math.floor(a / feat.W) + 0.5) * stride;
        ctx.fillStyle = COLORS.pool;
        ctx.fillRect(cx - sz / 2, cy - sz / 2, sz, sz);
        ctx.strokeStyle = "#000";
        ctx.lineWidth = px(1);
        ctx.strokeRect(cx - sz / 2, cy - sz / 2, sz, sz);
      }
    }
  }

  /* Colour of a sample: cyan inside the map, yellow if clamped onto its edge, red if beyond it (counts 0). */
  function sampleColor(sy, sx) {
    if (!sy.inside || !sx.inside) return COLORS.outside;
    if (sy.pos !== sy.raw || sx.pos !== sx.raw) return COLORS.clamped;
    return COLORS.inside;
  }

  function sampleCount(g) { return g.ph * g.pw * g.gh * g.gw; }

  function drawAlign() {
    const g = res.align.g;
    const roi = [mapX(g.x0), mapX(g.y0), mapX(g.x0) + g.roiW * stride, mapX(g.y0) + g.roiH * stride];
    // Bin edges.
    ctx.strokeStyle = "rgba(10,166,200,0.85)";
    ctx.lineWidth = px(1);
    ctx.beginPath();
    for (let p = 1; p < g.pw; p++) { const x = mapX(g.x0 + p * g.binW); ctx.moveTo(x, roi[1]); ctx.lineTo(x, roi[3]); }
    for (let p = 1; p < g.ph; p++) { const y = mapX(g.y0 + p * g.binH); ctx.moveTo(roi[0], y); ctx.lineTo(roi[2], y); }
    ctx.stroke();
    strokeRect(roi, COLORS.align, 2, [6, 4]);
    // Sampling points; in max mode the winner of each bin gets a ring.
    const n = sampleCount(g);
    const r = n > 3000 ? 1.2 : n > 400 ? 1.7 : n > 100 ? 2.2 : 3;
    const data = feat.data[st.channel];
    for (let py = 0; py < g.ph; py++) {
      for (let qx = 0; qx < g.pw; qx++) {
        let best = null;
        for (let iy = 0; iy < g.gh; iy++) {
          const sy = g.ys[py * g.gh + iy];
          for (let ix = 0; ix < g.gw; ix++) {
            const sx = g.xs[qx * g.gw + ix];
            const x = mapX(sx.raw), y = mapX(sy.raw);
            const color = sampleColor(sy, sx);
            if (color === COLORS.clamped && r >= 2) {
              // A thin line to where the sample is actually read.
              ctx.strokeStyle = "rgba(255,210,63,0.7)";
              ctx.lineWidth = px(1);
              ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(mapX(sx.pos), mapX(sy.pos)); ctx.stroke();
            }
            dot(x, y, r, color, r >= 2.2 ? "rgba(0,0,0,0.7)" : null);
            if (st.mode === "max") {
              const v = sampleValue(data, feat.W, sy, sx);
              if (best === null || v > best.v) best = { v: v, x: x, y: y };
            }
          }
        }
        if (best) dot(best.x, best.y, r + 2.5, null, "#fff");
      }
    }
  }

  function binRects(py, qx) {
    const ga = res.align.g, gp = res.pool.g;
    const ax = mapX(ga.x0 + qx * ga.binW), ay = mapX(ga.y0 + py * ga.binH);
    return {
      align: [ax, ay, ax + ga.binW * stride, ay + ga.binH * stride],
      pool: [gp.cols.lo[qx] * stride, gp.rows.lo[py] * stride, gp.cols.hi[qx] * stride, gp.rows.hi[py] * stride],
    };
  }

  function drawHover() {
    const h = st.hover;
    if (!h) return;
    if (h.kind === "bin") {
      const r = binRects(h.py, h.px);
      if (st.overlay !== "pool") {
        ctx.fillStyle = COLORS.alignFill;
        ctx.fillRect(r.align[0], r.align[1], r.align[2] - r.align[0], r.align[3] - r.align[1]);
        strokeRect(r.align, COLORS.hover, 2);
      }
      if (st.overlay !== "align" && r.pool[2] > r.pool[0] && r.pool[3] > r.pool[1]) strokeRect(r.pool, COLORS.hover, 3, [3, 3]);
      return;
    }
    const g = res.align.g;
    const sy = g.ys[h.py * g.gh + h.iy], sx = g.xs[h.px * g.gw + h.ix];
    const x = mapX(sx.raw), y = mapX(sy.raw);
    if (sy.inside && sx.inside) {
      const t = taps(sy, sx);
      const seen = {};
      ctx.font = px(11) + "px system-ui, sans-serif";
      ctx.textBaseline = "middle";
      t.forEach((tap, k) => {
        const cx = (tap.col + 0.5) * stride, cy = (tap.row + 0.5) * stride;
        strokeRect([tap.col * stride, tap.row * stride, (tap.col + 1) * stride, (tap.row + 1) * stride], COLORS.hover, 2);
        ctx.strokeStyle = COLORS.hover;
        ctx.lineWidth = px(1 + 4 * tap.w);
        ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(cx, cy); ctx.stroke();
        dot(cx, cy, 3, COLORS.hover, "#000");
        const key = tap.row + "," + tap.col;
        if (seen[key] !== undefined) return; // at the map's edge two taps are the same cell: one label
        seen[key] = k;
        const label = "w " + tap.w.toFixed(3);
        const tx = cx + (tap.col === sx.low && sx.low !== sx.high ? -px(6) : px(6));
        const ty = cy + (tap.row === sy.low && sy.low !== sy.high ? -px(8) : px(8));
        ctx.textAlign = tx < cx ? "right" : "left";
        ctx.lineWidth = px(3);
        ctx.strokeStyle = "rgba(0,0,0,0.85)";
        ctx.strokeText(label, tx, ty);
        ctx.fillStyle = "#fff";
        ctx.fillText(label, tx, ty);
      });
    }
    dot(x, y, 5, null, COLORS.hover);
    dot(x, y, 6, null, "#000");
  }

  function drawBox() {
    const b = st.box;
    strokeRect(b, "rgba(0,0,0,0.75)", 4);
    strokeRect(b, COLORS.box, 2);
    const hs = px(7);
    for (const [x, y] of handlePoints(b)) {
      ctx.fillStyle = "#fff";
      ctx.fillRect(x - hs / 2, y - hs / 2, hs, hs);
      ctx.strokeStyle = "#000";
      ctx.lineWidth = px(1);
      ctx.strokeRect(x - hs / 2, y - hs / 2, hs, hs);
    }
  }

  function handlePoints(b) {
    const mx = (b[0] + b[2]) / 2, my = (b[1] + b[3]) / 2;
    return [[b[0], b[1]], [mx, b[1]], [b[2], b[1]], [b[2], my], [b[2], b[3]], [mx, b[3]], [b[0], b[3]], [b[0], my]];
  }

  function drawScan() {
    if (!scan.active) return;
    // Every position the scan visits, then the anchors at the current one.
    ctx.fillStyle = "rgba(255,255,255,0.7)";
    ctx.beginPath();
    const r = px(1.5);
    for (let j = 0; j < scan.ny; j++) {
      for (let i = 0; i < scan.nx; i++) {
        ctx.moveTo(scanCoord(i) + r, scanCoord(j));
        ctx.arc(scanCoord(i), scanCoord(j), r, 0, 2 * Math.PI);
      }
    }
    ctx.fill();
    const at = scanPlace(scan.t);
    for (const a of scanAnchorIndices()) {
      const c = input.anchors.cells[a];
      strokeRect([at.cx + c[0], at.cy + c[1], at.cx + c[2], at.cy + c[3]], "rgba(255,255,255,0.45)", 1, [3, 3]);
    }
    ctx.strokeStyle = COLORS.hover;
    ctx.lineWidth = px(2);
    ctx.beginPath();
    ctx.moveTo(at.cx - px(6), at.cy); ctx.lineTo(at.cx + px(6), at.cy);
    ctx.moveTo(at.cx, at.cy - px(6)); ctx.lineTo(at.cx, at.cy + px(6));
    ctx.stroke();
  }

  let drawQueued = false;
  function draw() {
    drawQueued = false;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#2a2f38";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    setWorldTransform();
    drawBackground();
    if (st.overlay !== "align") drawPool();
    drawScan();
    if (st.overlay !== "pool") drawAlign();
    drawBox();
    drawHover();
  }
  function queueDraw() {
    if (!drawQueued) { drawQueued = true; requestAnimationFrame(draw); }
  }

  // ============================================================================================ the panels
  let cellsBuilt = { align: "", pool: "" };

  /* One output as a grid of coloured cells with the values written in them. */
  function renderGrid(which, out) {
    const el = $("grid-" + which);
    const avail = Math.max(120, (el.parentElement.clientWidth || 200) - 2);
    const size = Math.max(6, Math.min(40, Math.floor((avail - (st.pw - 1)) / st.pw)));
    const key = st.ph + "x" + st.pw + "@" + size;
    if (cellsBuilt[which] !== key) {
      el.textContent = "";
      el.style.gridTemplateColumns = "repeat(" + st.pw + ", " + size + "px)";
      el.style.gridAutoRows = size + "px";
      for (let py = 0; py < st.ph; py++) {
        for (let qx = 0; qx < st.pw; qx++) {
          const d = document.createElement("div");
          d.dataset.py = py;
          d.dataset.px = qx;
          el.appendChild(d);
        }
      }
      cellsBuilt[which] = key;
    }
    const sc = scheme(st.channel);
    const plane = out[st.channel];
    const showNumbers = st.numbers && size >= 26;
    const hv = st.hover && st.hover.kind === "bin" ? st.hover : null;
    let i = 0;
    for (const d of el.children) {
      const py = Math.floor(i / st.pw), qx = i % st.pw;
      const v = plane[py][qx];
      const col = sc.color(v);
      d.style.background = rgb(col);
      d.style.color = inkFor(col);
      d.textContent = showNumbers ? fmt(v) : "";
      d.title = which + " bin (" + py + ", " + qx + "): " + v.toPrecision(7);
      d.classList.toggle("hover", !!hv && hv.py === py && hv.px === qx);
      i++;
    }
  }

  function renderColorbar() {
    const sc = scheme(st.channel);
    const cb = $("colorbar");
    const c = cb.getContext("2d");
    for (let x = 0; x < cb.width; x++) {
      c.fillStyle = rgb(ramp(sc.stops, x / (cb.width - 1)));
      c.fillRect(x, 0, 1, cb.height);
    }
    $("cb-lo").textContent = fmt(sc.lo);
    $("cb-hi").textContent = fmt(sc.hi);
  }

  function renderCaptions() {
    const grid = st.sampling > 0 ? st.sampling + "\u00d7" + st.sampling : "adaptive " + res.align.g.gh + "\u00d7" + res.align.g.gw;
    $("sub-align").textContent = st.mode + " of " + grid + " points" + (st.aligned ? ", aligned" : "");
    $("sub-pool").textContent = "max of the whole cells in each bin";
    const a = res.align.out[st.channel], p = res.pool.out[st.channel];
    let maxd = 0, sum = 0;
    for (let y = 0; y < st.ph; y++) for (let x = 0; x < st.pw; x++) {
      const d = Math.abs(a[y][x] - p[y][x]);
      maxd = Math.max(maxd, d);
      sum += d;
    }
    $("compare").textContent = "|Align \u2212 Pool| on " + channelNames[st.channel] + ": largest " + fmt(maxd) +
      ", mean " + fmt(sum / (st.ph * st.pw)) + " (value range of the channel " + fmt(feat.range[st.channel][0]) +
      " to " + fmt(feat.range[st.channel][1]) + ")";
  }

  function renderGeometry() {
    const b = st.box, ga = res.align.g, gp = res.pool.g;
    const region = poolRegion(gp).clipped;
    const inter = area(intersect(b, region));
    const lost = area(b) - inter, added = area(region) - inter;
    const n = (v) => fmtN(v, 2);
    const bins = (e) => {
      const sizes = e.lo.map((lo, i) => Math.max(e.hi[i] - lo, 0));
      return Math.min.apply(null, sizes) === Math.max.apply(null, sizes) ? String(sizes[0]) : Math.min.apply(null, sizes) + "\u2013" + Math.max.apply(null, sizes);
    };
    $("geometry").innerHTML =
      "<b>Box</b> (" + n(b[0]) + ", " + n(b[1]) + ")\u2013(" + n(b[2]) + ", " + n(b[3]) + "), " + n(b[2] - b[0]) + "\u00d7" + n(b[3] - b[1]) +
      " px = " + n((b[2] - b[0]) / stride) + "\u00d7" + n((b[3] - b[1]) / stride) + " cells of stride " + stride + ". " +
      "<b style='color:" + COLORS.align + "'>RoI Align</b>: RoI " + n(ga.roiW) + "\u00d7" + n(ga.roiH) + " cells from (" + n(ga.x0) + ", " + n(ga.y0) +
      "), bins " + n(ga.binW) + "\u00d7" + n(ga.binH) + " cells, " + ga.gw + "\u00d7" + ga.gh + " points each. " +
      "<b style='color:" + COLORS.pool + "'>RoI Pool</b>: cells x " + gp.cx1 + "\u2013" + (gp.cx1 + gp.roiW - 1) + ", y " + gp.cy1 + "\u2013" + (gp.cy1 + gp.roiH - 1) +
      ", bins " + bins(gp.cols) + " \u00d7 " + bins(gp.rows) + " cells; <span style='color:#c0392b'>lost " + Math.round(lost) +
      " px\u00b2</span> and <span style='color:#2860d0'>added " + Math.round(added) + " px\u00b2</span> against the box's " + Math.round(area(b)) + " px\u00b2.";
  }

  function legendItem(kind, color, text) {
    const c = document.createElement("canvas");
    c.width = c.height = 14;
    const g = c.getContext("2d");
    if (kind === "dot") { g.fillStyle = color; g.beginPath(); g.arc(7, 7, 4, 0, 7); g.fill(); g.strokeStyle = "#000"; g.stroke(); }
    else if (kind === "line") { g.strokeStyle = color; g.lineWidth = 2; g.setLineDash([4, 2]); g.strokeRect(1, 1, 12, 12); }
    else if (kind === "hatch") { g.strokeStyle = color; g.lineWidth = 1.5; for (let k = -14; k < 14; k += 5) { g.beginPath(); g.moveTo(k, 14); g.lineTo(k + 14, 0); g.stroke(); } }
    else { g.fillStyle = color; g.fillRect(2, 2, 10, 10); g.strokeStyle = "#000"; g.strokeRect(2, 2, 10, 10); }
    const s = document.createElement("span");
    s.className = "item";
    s.appendChild(c);
    s.appendChild(document.createTextNode(text));
    return s;
  }

  function renderLegend() {
    const el = $("legend");
    el.textContent = "";
    el.appendChild(legendItem("box", "#fff", "your box"));
    if (st.overlay !== "pool") {
      el.appendChild(legendItem("line", COLORS.align, "RoI Align's RoI and bins"));
      el.appendChild(legendItem("dot", COLORS.inside, "sample"));
      el.appendChild(legendItem("dot", COLORS.clamped, "clamped to the edge"));
      el.appendChild(legendItem("dot", COLORS.outside, "outside: 0"));
    }
    if (st.overlay !== "align") {
      el.appendChild(legendItem("line", COLORS.pool, "RoI Pool's cells and bins"));
      el.appendChild(legendItem("box", COLORS.pool, "max cell"));
      el.appendChild(legendItem("hatch", COLORS.lost, "lost"));
      el.appendChild(legendItem("hatch", COLORS.added, "added"));
    }
  }

  function esc(s) { return String(s).replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]); }

  /* The hover panel: one sample's interpolation, or one bin of both ops. */
  function renderDetail() {
    const el = $("detail");
    const h = st.hover;
    const data = feat.data[st.channel];
    const cname = esc(channelNames[st.channel]);
    if (!h) {
      el.innerHTML = "<div class='hint'>Drag the box, its corners or its edges; drag elsewhere to draw a new one " +
        "(arrow keys move it by a pixel, with Shift by a cell). " +
        "Hover a sampling point to see the four cells it is interpolated from and their bilinear weights; " +
        "hover an output cell to see its bin in both ops.</div>";
      return;
    }
    const g = res.align.g;
    if (h.kind === "sample") {
      const sy = g.ys[h.py * g.gh + h.iy], sx = g.xs[h.px * g.gw + h.ix];
      let s = "<b>Sample</b> (" + (h.iy + 1) + ", " + (h.ix + 1) + ") of " + g.gh + "\u00d7" + g.gw + " in bin (" + h.py + ", " + h.px + ")\n" +
        "at y " + sy.raw.toFixed(4) + ", x " + sx.raw.toFixed(4) + " (cells, value of cell i at i)\n";
      if (!sy.inside || !sx.inside) {
        s += "<span class='zero'>more than one cell outside the " + feat.H + "\u00d7" + feat.W + " map: the sample is 0, and still counts in the average</span>\n";
      } else {
        if (sy.pos !== sy.raw || sx.pos !== sx.raw) s += "clamped onto the map to y " + sy.pos.toFixed(4) + ", x " + sx.pos.toFixed(4) + "\n";
        s += "<table><tr><th>cell (row, col)</th><th>value</th><th>weight</th><th>w \u00d7 v</th></tr>";
        for (const t of taps(sy, sx)) {
          const v = data[t.row * feat.W + t.col];
          s += "<tr><td>(" + t.row + ", " + t.col + ")</td><td>" + v.toFixed(4) + "</td><td>" + t.w.toFixed(4) + "</td><td>" + f32(v * t.w).toFixed(4) + "</td></tr>";
        }
        s += "</table>";
      }
      s += "value = " + sampleValue(data, feat.W, sy, sx).toFixed(5) + " on " + cname;
      el.innerHTML = s;
      return;
    }
    // A bin.
    const vals = [];
    for (let iy = 0; iy < g.gh; iy++) for (let ix = 0; ix < g.gw; ix++) {
      vals.push(sampleValue(data, feat.W, g.ys[h.py * g.gh + iy], g.xs[h.px * g.gw + ix]));
    }
    const gp = res.pool.g;
    const r0 = gp.rows.lo[h.py], r1 = gp.rows.hi[h.py], c0 = gp.cols.lo[h.px], c1 = gp.cols.hi[h.px];
    const a = res.pool.arg[st.channel][h.py][h.px];
    let s = "<b>Bin (" + h.py + ", " + h.px + ")</b> on " + cname + "\n" +
      "<b style='color:" + COLORS.align + "'>RoI Align</b>: " + vals.length + " points " +
      (vals.length <= 16 ? "[" + vals.map((v) => v.toFixed(3)).join(", ") + "]" : "from " + fmt(Math.min.apply(null, vals)) + " to " + fmt(Math.max.apply(null, vals))) +
      "\n  " + st.mode + " = " + res.align.out[st.channel][h.py][h.px].toFixed(5) + "\n" +
      "<b style='color:" + COLORS.pool + "'>RoI Pool</b>: ";
    if (a < 0) s += "no cell left after clipping to the map: 0";
    else s += "rows " + r0 + "\u2013" + (r1 - 1) + ", cols " + c0 + "\u2013" + (c1 - 1) + " (" + (r1 - r0) * (c1 - c0) + " cells)\n  max = " +
      res.pool.out[st.channel][h.py][h.px].toFixed(5) + " at cell (" + Math.floor(a / feat.W) + ", " + (a % feat.W) + ")";
    el.innerHTML = s;
  }

  function renderPanels() {
    renderGrid("align", res.align.out);
    renderGrid("pool", res.pool.out);
    renderCaptions();
    renderGeometry();
    renderDetail();
  }

  function syncInputs() {
    ["x1", "y1", "x2", "y2"].forEach((k, i) => { $("ctl-" + k).value = st.box[i]; });
    $("ctl-output").value = st.ph;
  }

  /* Recompute, redraw, refresh the panels: after any change of box or settings. */
  function update() {
    recompute();
    syncInputs();
    renderPanels();
    queueDraw();
  }

  // ============================================================================================ the box
  const snap = (v) => Math.round(v * 4) / 4; // quarter pixels: fine enough, and exact in float32
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);

  /* Keep an edited box inside the shown area, ordered, and touching the image (as page_state requires). */
  function constrain(b) {
    let [x1, y1, x2, y2] = b.map(snap);
    x1 = clamp(x1, world.x0, world.x1); x2 = clamp(x2, world.x0, world.x1);
    y1 = clamp(y1, world.y0, world.y1); y2 = clamp(y2, world.y0, world.y1);
    if (x2 < x1) [x1, x2] = [x2, x1];
    if (y2 < y1) [y1, y2] = [y2, y1];
    x1 = Math.min(x1, imgW); y1 = Math.min(y1, imgH);
    x2 = Math.max(x2, 0); y2 = Math.max(y2, 0);
    return [x1, y1, x2, y2];
  }

  function eventWorld(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) / view.k + world.x0, (e.clientY - r.top) / view.k + world.y0];
  }

  const HANDLES = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];
  const CURSORS = { nw: "nwse-resize", se: "nwse-resize", ne: "nesw-resize", sw: "nesw-resize", n: "ns-resize", s: "ns-resize", e: "ew-resize", w: "ew-resize", move: "move" };

  /* What a press at (x, y) grabs: a handle, the box (move), or nothing (draw a new box). */
  function grab(x, y) {
    const b = st.box;
    const tol = px(7);
    const inside = x > b[0] && x < b[2] && y > b[1] && y < b[3];
    // A box too small for its handles is moved from its inside, resized from just outside.
    if (inside && (b[2] - b[0] < 3 * tol || b[3] - b[1] < 3 * tol)) return "move";
    const pts = handlePoints(b);
    for (let i = 0; i < pts.length; i++) {
      if (Math.abs(x - pts[i][0]) <= tol && Math.abs(y - pts[i][1]) <= tol) return HANDLES[i];
    }
    const nearX = x > b[0] - tol && x < b[2] + tol, nearY = y > b[1] - tol && y < b[3] + tol;
    if (nearY && Math.abs(x - b[0]) <= tol) return "w";
    if (nearY && Math.abs(x - b[2]) <= tol) return "e";
    if (nearX && Math.abs(y - b[1]) <= tol) return "n";
    if (nearX && Math.abs(y - b[3]) <= tol) return "s";
    return inside ? "move" : null;
  }

  function dragTo(x, y) {
    const d = st.drag;
    const b = d.box.slice();
    const dx = x - d.x, dy = y - d.y;
    if (d.what === "new") {
      st.box = constrain([Math.min(d.x, x), Math.min(d.y, y), Math.max(d.x, x), Math.max(d.y, y)]);
      return;
    }
    if (d.what === "move") {
      // Whole-box moves stay within the shown area and keep touching the image.
      const mx = clamp(snap(dx), Math.max(world.x0 - b[0], -b[2]), Math.min(world.x1 - b[2], imgW - b[0]));
      const my = clamp(snap(dy), Math.max(world.y0 - b[1], -b[3]), Math.min(world.y1 - b[3], imgH - b[1]));
      st.box = [b[0] + mx, b[1] + my, b[2] + mx, b[3] + my];
      return;
    }
    if (d.what.includes("w")) b[0] = Math.min(b[0] + dx, b[2]);
    if (d.what.includes("e")) b[2] = Math.max(b[2] + dx, b[0]);
    if (d.what.includes("n")) b[1] = Math.min(b[1] + dy, b[3]);
    if (d.what.includes("s")) b[3] = Math.max(b[3] + dy, b[1]);
    st.box = constrain(b);
  }

  /* The sampling point under the pointer (within 6 css px), if RoI Align is shown. */
  function sampleAt(x, y) {
    if (st.overlay === "pool" || !res) return null;
    const g = res.align.g;
    let best = null, bestD = px(6);
    for (let py = 0; py < g.ph; py++) for (let iy = 0; iy < g.gh; iy++) {
      const sy = mapX(g.ys[py * g.gh + iy].raw);
      if (Math.abs(sy - y) > bestD) continue;
      for (let qx = 0; qx < g.pw; qx++) for (let ix = 0; ix < g.gw; ix++) {
        const d = Math.hypot(mapX(g.xs[qx * g.gw + ix].raw) - x, sy - y);
        if (d <= bestD) { bestD = d; best = { kind: "sample", py: py, px: qx, iy: iy, ix: ix }; }
      }
    }
    return best;
  }

  const sameHover = (a, b) => (a === b) || (!!a && !!b && a.kind === b.kind && a.py === b.py && a.px === b.px && a.iy === b.iy && a.ix === b.ix);

  function setHover(h) {
    if (sameHover(h, st.hover)) return;
    st.hover = h;
    renderDetail();
    renderGrid("align", res.align.out);
    renderGrid("pool", res.pool.out);
    queueDraw();
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    const [x, y] = eventWorld(e);
    scanLeave();
    const what = grab(x, y) || "new";
    st.drag = { what: what, x: what === "new" ? snap(x) : x, y: what === "new" ? snap(y) : y, box: st.box.slice() };
    try {
      canvas.setPointerCapture(e.pointerId); // keep the drag when the pointer leaves the canvas
    } catch (err) {
      // Synthetic events (scripts, tests) have no active pointer to capture; the drag works without it.
    }
    st.hover = null;
    e.preventDefault();
  });
  canvas.addEventListener("pointermove", (e) => {
    const [x, y] = eventWorld(e);
    if (st.drag) {
      dragTo(x, y);
      update();
      return;
    }
    const what = grab(x, y);
    canvas.style.cursor = what ? CURSORS[what] : "crosshair";
    setHover(sampleAt(x, y));
  });
  const endDrag = () => { st.drag = null; };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("pointerleave", () => { if (!st.drag) setHover(null); });

  // Arrow keys move the focused box by a pixel, with Shift by a cell.
  canvas.addEventListener("keydown", (e) => {
    const step = e.shiftKey ? stride : 1;
    const move = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
    if (!move) return;
    e.preventDefault();
    scanLeave();
    const b = st.box;
    st.drag = { what: "move", x: 0, y: 0, box: b.slice() };
    dragTo(move[0], move[1]);
    st.drag = null;
    update();
  });

  ["align", "pool"].forEach((which) => {
    const el = $("grid-" + which);
    el.addEventListener("pointermove", (e) => {
      const d = e.target.closest("div[data-py]");
      if (d) setHover({ kind: "bin", py: +d.dataset.py, px: +d.dataset.px });
    });
    el.addEventListener("pointerleave", () => setHover(null));
  });

  // ============================================================================================ controls
  function fillSelect(sel, options, value) {
    sel.textContent = "";
    for (const [v, text] of options) {
      const o = document.createElement("option");
      o.value = v;
      o.textContent = text;
      sel.appendChild(o);
    }
    sel.value = value;
  }

  fillSelect($("ctl-channel"), channelNames.map((n, i) => [i, n]), 0);
  if (st.sampling > 4) fillSelect($("ctl-sampling"), [[0, "adaptive"], [1, "1\u00d71"], [2, "2\u00d72"], [3, "3\u00d73"], [4, "4\u00d74"], [st.sampling, st.sampling + "\u00d7" + st.sampling]], st.sampling);
  $("ctl-sampling").value = st.sampling;
  $("ctl-mode").value = st.mode;
  $("ctl-aligned").checked = st.aligned;
  $("ctl-overlay").value = st.overlay;
  $("ctl-background").value = st.background;
  document.querySelectorAll(".js-stride").forEach((e) => { e.textContent = stride; });

  ["x1", "y1", "x2", "y2"].forEach((k, i) => {
    $("ctl-" + k).addEventListener("change", (e) => {
      const v = parseFloat(e.target.value);
      if (Number.isFinite(v)) {
        const b = st.box.slice();
        b[i] = v;
        st.box = constrain(b);
      }
      scanLeave();
      update();
    });
  });
  $("ctl-output").addEventListener("change", (e) => {
    const v = parseInt(e.target.value, 10);
    if (Number.isFinite(v)) st.ph = st.pw = clamp(v, 1, 32);
    update();
  });
  $("ctl-sampling").addEventListener("change", (e) => { st.sampling = +e.target.value; update(); });
  $("ctl-mode").addEventListener("change", (e) => { st.mode = e.target.value; update(); });
  $("ctl-aligned").addEventListener("change", (e) => { st.aligned = e.target.checked; update(); });
  $("ctl-channel").addEventListener("change", (e) => { st.channel = +e.target.value; renderColorbar(); update(); });
  $("ctl-overlay").addEventListener("change", (e) => { st.overlay = e.target.value; st.hover = null; renderLegend(); update(); });
  $("ctl-background").addEventListener("change", (e) => { st.background = e.target.value; queueDraw(); });
  $("ctl-numbers").addEventListener("change", (e) => { st.numbers = e.target.checked; renderPanels(); });

  // ============================================================================================ the scan
  /* Anchors of 3 sizes x 3 ratios (input.anchors.cells, zero-centred, as maskrt.model.anchors.cell_anchors
   * makes them) centred on every `every`-th cell corner, where the RPN centres its anchors, visited row by row
   * and, at each position, anchor by anchor. Each one becomes the box, so both outputs follow the scan. */
  const scan = { t: 0, playing: false, timer: null, active: false, every: 1, nx: 1, ny: 1, which: "all", saved: null };

  function scanAnchorIndices() {
    return scan.which === "all" ? input.anchors.cells.map((_, i) => i) : [+scan.which];
  }
  function scanTotal() { return scan.nx * scan.ny * scanAnchorIndices().length; }
  function scanPlace(t) {
    const ids = scanAnchorIndices();
    const pos = Math.floor(t / ids.length);
    return { anchor: ids[t % ids.length], cx: scanCoord(pos % scan.nx), cy: scanCoord(Math.floor(pos / scan.nx)), pos: pos };
  }
  /* Centre of the i-th position along an axis: an anchor location of the RPN (a cell corner), the first one
   * half a step in so that the scan does not start with anchors three quarters off the image. */
  function scanCoord(i) { return (i * scan.every + Math.floor(scan.every / 2)) * stride; }
  function scanSetEvery(e) {
    scan.every = e;
    scan.nx = Math.ceil(feat.W / e);
    scan.ny = Math.ceil(feat.H / e);
  }
  function anchorName(i) {
    const sizes = input.anchors.sizes, ratios = input.anchors.ratios;
    const size = sizes[i % sizes.length], ratio = ratios[Math.floor(i / sizes.length)];
    const shape = ratio < 1 ? "wide" : ratio > 1 ? "tall" : "square";
    return size + " px " + shape + " (h/w " + ratio + ")";
  }
  function speed() { return 0.5 * Math.pow(120, $("scan-speed").value / 100); } // 0.5 to 60 anchors a second

  function scanApply() {
    if (!scan.active) {
      scan.active = true;
      scan.saved = st.box.slice();
    }
    const at = scanPlace(scan.t);
    const c = input.anchors.cells[at.anchor];
    // Anchors are placed as they are, even where they stick out of the image and the map.
    st.box = [at.cx + c[0], at.cy + c[1], at.cx + c[2], at.cy + c[3]];
    st.hover = null;
    update();
    renderScanStatus();
  }
  function renderScanStatus() {
    const at = scanPlace(scan.t);
    $("scan-play").innerHTML = scan.playing ? "&#10073;&#10073; pause" : "&#9654; play";
    $("scan-speed-text").textContent = speed().toFixed(speed() < 10 ? 1 : 0) + " /s";
    $("scan-status").textContent = scan.active
      ? "anchor " + (scan.t + 1) + " of " + scanTotal() + ": " + anchorName(at.anchor) + " at (" + at.cx + ", " + at.cy + ")"
      : scanTotal() + " anchors: " + scan.nx + "\u00d7" + scan.ny + " positions \u00d7 " + scanAnchorIndices().length;
  }
  function scanTick() {
    scan.timer = null;
    if (!scan.playing) return;
    scan.t = (scan.t + 1) % scanTotal();
    scanApply();
    scan.timer = setTimeout(scanTick, 1000 / speed());
  }
  function scanPlay() {
    if (scan.playing) return;
    scan.playing = true;
    scanApply();
    scan.timer = setTimeout(scanTick, 1000 / speed());
    renderScanStatus();
  }
  function scanPause() {
    scan.playing = false;
    if (scan.timer !== null) { clearTimeout(scan.timer); scan.timer = null; }
    renderScanStatus();
  }
  /* The user edits the box: the scan stops where it is and the box is theirs. */
  function scanLeave() {
    scanPause();
    scan.active = false;
    renderScanStatus();
  }
  function scanReset() {
    scanPause();
    if (scan.active) {
      scan.active = false;
      st.box = scan.saved;
    }
    scan.t = 0;
    update();
    renderScanStatus();
  }

  const everyOptions = [1, 2, 4, 8].filter((e) => e === 1 || Math.ceil(feat.W / e) >= 2);
  // About a dozen positions per row by default.
  scanSetEvery(everyOptions.find((e) => Math.ceil(feat.W / e) <= 12) || everyOptions[everyOptions.length - 1]);
  fillSelect($("scan-every"), everyOptions.map((e) => [e, String(e)]), scan.every);
  fillSelect($("scan-anchors"), [["all", "all 9"]].concat(input.anchors.cells.map((_, i) => [i, anchorName(i)])), "all");
  $("scan-play").addEventListener("click", () => (scan.playing ? scanPause() : scanPlay()));
  $("scan-step").addEventListener("click", () => {
    scanPause();
    if (scan.active) scan.t = (scan.t + 1) % scanTotal();
    scanApply();
  });
  $("scan-reset").addEventListener("click", scanReset);
  $("scan-speed").addEventListener("input", () => {
    renderScanStatus();
    if (scan.playing) { clearTimeout(scan.timer); scan.timer = setTimeout(scanTick, 1000 / speed()); }
  });
  $("scan-every").addEventListener("change", (e) => {
    scanSetEvery(+e.target.value);
    scan.t = 0;
    if (scan.active) scanApply(); else renderScanStatus();
  });
  $("scan-anchors").addEventListener("change", (e) => {
    scan.which = e.target.value;
    scan.t = 0;
    if (scan.active) scanApply(); else renderScanStatus();
  });

  // ============================================================================================ start
  $("about").textContent = "Image: " + input.source + ", shown at " + imgW + "\u00d7" + imgH + " px" +
    (input.original_size && (input.original_size[0] !== imgH || input.original_size[1] !== imgW)
      ? " (resized from " + input.original_size[1] + "\u00d7" + input.original_size[0] + " as the model does)" : "") +
    ". Features: " + (input.level || "embedded") + ", stride " + stride + ", a " + feat.H + "\u00d7" + feat.W + " map, " +
    feat.C + " channel" + (feat.C > 1 ? "s" : "") + ". Box coordinates are pixels of the image as shown.";

  // The outputs first: they do not depend on the layout or on the image being decoded.
  recompute();
  renderLegend();
  renderColorbar();
  syncInputs();
  renderPanels();
  renderScanStatus();
  layoutStage(); // after the panels: the stage takes the width they leave
  draw();
  if (!image.complete) image.addEventListener("load", queueDraw);
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { layoutStage(); cellsBuilt = { align: "", pool: "" }; renderPanels(); draw(); }, 100);
  });

  // For the console (and scripted checks): the ops, the live state, and the shown area in image pixels.
  window.maskrtRoiAlign = {
    alignGeometry: alignGeometry, roiAlign: roiAlign, poolGeometry: poolGeometry, roiPool: roiPool,
    feature: feat, state: st, world: world,
  };
})();
