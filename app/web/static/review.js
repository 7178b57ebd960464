// Review page: fused planning CT / MVCT views drawn in the browser from two int16 volumes.
//
// The volumes share one axis-aligned LPS grid (app/web/volumes.py): voxel (i, j, k) is at
// origin + spacing·(i, j, k); arrays are ordered k (head +z), j (posterior +y), i (left +x).
// "After correction" shows the MVCT sampled at M·p, where M = A_δ ∘ M_base: M_base undoes the
// registration's machine correction (server-computed, registration.couch.
// correction_as_planning_to_daily) and δ is the physician's nudge in IEC table axes (translation
// δt in mm, rotations in degrees; A: LPS → IEC). As in registration/adjustment.py:
// A_δ(x) = R_aδ·(x − q) + q − Aᵀ·δt with q = M_base·P (the isocentre today) and
// R_aδ = Aᵀ·R_δᵀ·A, R_δ = Rz(yaw)·Rx(pitch)·Ry(roll). A translation nudge of +δt moves the
// corrected MVCT by +Aᵀ·δt in the patient frame, exactly as moving the couch by δt would. Display: radiological (patient's right on the
// screen's left), anterior up in axial, head up in coronal and sagittal, anterior left in sagittal.
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("review-config").textContent);
  const NO_DATA = -32768;
  const PRESETS = { soft: { level: 40, width: 400 }, bone: { level: 400, width: 1800 } };
  const TRANSLATIONS = ["lateral_mm", "longitudinal_mm", "vertical_mm"];
  const ALL_AXES = TRANSLATIONS.concat(["pitch_deg", "roll_deg", "yaw_deg"]);
  const CHECKER_VOXELS = 8;
  const VIEW_PIXELS = 400;
  const PLANES = ["axial", "coronal", "sagittal"];
  // screen right and screen up of each plane, as LPS unit vectors (for the arrow keys)
  const SCREEN = {
    axial: { right: [1, 0, 0], up: [0, -1, 0] },
    coronal: { right: [1, 0, 0], up: [0, 0, 1] },
    sagittal: { right: [0, 1, 0], up: [0, 0, 1] },
  };
  const status = document.getElementById("view-status");
  const perf = (window.__review = { ready: false, renders: 0, lastRenderMs: null, lastFrameMs: null, loadMs: null });

  const state = {
    mode: "blend",
    after: config.baseToDaily !== null,
    preset: "soft",
    opacity: 0.5,
    offset: config.initialOffset.slice(),
    slice: { axial: 0, coronal: 0, sagittal: 0 },
    active: "axial",
  };
  let grid = null;
  let plan = null;
  let mvct = null;
  // the course's structures: one bit per structure per review voxel (app/web/review_structures.py)
  let structures = [];
  let structureBits = null;
  // the targets' surface points (≤ 2000 each, LPS mm, planning frame) for the live residual
  let targets = [];
  let lut = null;
  const canvases = {};
  const buffers = {};

  // --- loading --------------------------------------------------------------------------------

  async function fetchChecked(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(location.pathname));
      throw new Error("signed out");
    }
    if (!response.ok) {
      let detail = "error " + response.status;
      try {
        detail = (await response.json()).detail || detail;
      } catch (ignored) {}
      throw new Error(detail);
    }
    return response;
  }

  async function load() {
    const started = performance.now();
    try {
      const meta = await (await fetchChecked(config.volumesUrl)).json();
      const [p, m] = await Promise.all([
        fetchChecked(meta.urls.planning).then((r) => r.arrayBuffer()),
        fetchChecked(meta.urls.mvct).then((r) => r.arrayBuffer()),
      ]);
      grid = meta;
      plan = new Int16Array(p);
      mvct = new Int16Array(m);
      const [nx, ny, nz] = grid.size;
      if (plan.length !== nx * ny * nz || mvct.length !== nx * ny * nz) {
        throw new Error("the review images are incomplete: reload the page");
      }
    } catch (error) {
      status.textContent = "images cannot be shown: " + error.message;
      status.classList.add("error");
      return;
    }
    setUpViews();
    setWindow(state.preset);
    render();
    perf.loadMs = performance.now() - started;
    perf.size = grid.size.slice();
    perf.spacingMm = grid.spacing_mm;
    perf.isoIndex = grid.isocenter_index.slice();
    perf.ready = true;
    status.textContent = describeGrid();
    await loadStructures();
    document.body.dataset.reviewReady = "1";
  }

  async function loadStructures() {
    try {
      const meta = await (await fetchChecked(config.structuresUrl)).json();
      if (!meta.url || meta.structures.length === 0) return;
      const bits = new Uint32Array(await (await fetchChecked(meta.url)).arrayBuffer());
      const [nx, ny, nz] = grid.size;
      if (bits.length !== nx * ny * nz) throw new Error("the structures are incomplete: reload the page");
      structures = meta.structures;
      structureBits = bits;
      targets = meta.targets || [];
      updateTargetResiduals();
    } catch (error) {
      status.textContent += " · structures cannot be shown: " + error.message;
      return;
    }
    const box = document.getElementById("structure-toggles");
    for (const structure of structures) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.checked = structure.on;
      input.dataset.structure = structure.name;
      input.addEventListener("change", () => {
        structure.on = input.checked;
        render();
      });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = "rgb(" + structure.color.join(",") + ")";
      label.append(input, swatch, " " + structure.name);
      box.append(label);
    }
    box.hidden = false;
    render();
  }

  function describeGrid() {
    const [nx, ny, nz] = grid.size;
    return nx + "×" + ny + "×" + nz + " voxels of " + grid.spacing_mm + " mm around the isocentre";
  }

  function setUpViews() {
    const [nx, ny, nz] = grid.size;
    const [ci, cj, ck] = grid.isocenter_index;
    const limits = { axial: [nz - 1, ck], coronal: [ny - 1, cj], sagittal: [nx - 1, ci] };
    for (const plane of PLANES) {
      const canvas = document.getElementById("view-" + plane);
      canvases[plane] = canvas;
      const slider = document.getElementById("slice-" + plane);
      slider.max = String(limits[plane][0]);
      slider.value = String(limits[plane][1]);
      state.slice[plane] = limits[plane][1];
      slider.addEventListener("input", () => {
        state.slice[plane] = Number(slider.value);
        render();
      });
      canvas.addEventListener(
        "wheel",
        (event) => {
          event.preventDefault();
          const next = state.slice[plane] + (event.deltaY > 0 ? -1 : 1);
          state.slice[plane] = Math.max(0, Math.min(limits[plane][0], next));
          slider.value = String(state.slice[plane]);
          render();
        },
        { passive: false },
      );
      for (const type of ["mouseenter", "focus", "click"]) {
        canvas.addEventListener(type, () => setActive(plane));
      }
    }
    setActive("axial");
  }

  function setActive(plane) {
    state.active = plane;
    for (const name of PLANES) {
      canvases[name].classList.toggle("active", name === plane);
    }
  }

  // --- the maths of one frame ---------------------------------------------------------------

  function setWindow(name) {
    state.preset = name;
    const { level, width } = PRESETS[name];
    const low = level - width / 2;
    lut = new Uint8ClampedArray(65536);
    for (let v = 0; v < 65536; v++) {
      lut[v] = ((v - 32768 - low) / width) * 255;
    }
  }

  function grey(value) {
    return lut[(value + 32768.5) | 0];
  }

  // MVCT index = R·p + c (index space): the grid is isotropic and shared, so R is M's rotation
  function matmul(x, y) {
    return [0, 1, 2].map((r) => [0, 1, 2].map((c) => x[r][0] * y[0][c] + x[r][1] * y[1][c] + x[r][2] * y[2][c]));
  }
  function transpose(x) {
    return [0, 1, 2].map((r) => [0, 1, 2].map((c) => x[c][r]));
  }
  function apply(x, v) {
    return [0, 1, 2].map((r) => x[r][0] * v[0] + x[r][1] * v[1] + x[r][2] * v[2]);
  }
  function rotation(axis, deg) {
    const t = (deg * Math.PI) / 180;
    const c = Math.cos(t);
    const s = Math.sin(t);
    if (axis === 0) return [[1, 0, 0], [0, c, -s], [0, s, c]];
    if (axis === 1) return [[c, 0, s], [0, 1, 0], [-s, 0, c]];
    return [[c, -s, 0], [s, c, 0], [0, 0, 1]];
  }

  // M = A_δ ∘ M_base as (R, t): LPS mm (see the header)
  function adjustedMotion() {
    const m = config.baseToDaily;
    const a = config.lpsToIec;
    const rm = [0, 1, 2].map((r) => [m[r][0], m[r][1], m[r][2]]);
    const tm = [0, 1, 2].map((r) => m[r][3]);
    const [dx, dy, dz, pitch, roll, yaw] = state.offset;
    const rDelta = matmul(rotation(2, yaw), matmul(rotation(0, pitch), rotation(1, roll)));
    const rA = matmul(transpose(a), matmul(transpose(rDelta), a));
    const iso = config.isocenter;
    const q = apply(rm, iso).map((v, r) => v + tm[r]);
    const d = apply(transpose(a), [dx, dy, dz]).map((v) => -v);
    const R = matmul(rA, rm);
    const rq = apply(rA, q);
    const t = apply(rA, tm).map((v, r) => v - rq[r] + q[r] + d[r]);
    return { R, t };
  }

  // The residual at each target for the correction on screen, as in registration/residuals.py:
  // r(p) = |M_C⁻¹·M·p − p| over the target's surface points p (planning LPS mm), with M =
  // config.planningToDaily (the registration, planning → daily LPS) and M_C = A_δ ∘ M_base
  // (adjustedMotion: M_base = registration.couch.correction_as_planning_to_daily of the
  // registration's correction; δ the nudge, a rigid motion about today's isocentre q = M_base·P in
  // IEC table axes, registration/adjustment.py), so M_C⁻¹·x = Rᵀ·(x − t). Max and the 95th
  // percentile (linear interpolation, as numpy) go to the table's "on screen" cell.
  function updateTargetResiduals() {
    const m = config.planningToDaily;
    if (m === null || config.baseToDaily === null || targets.length === 0) return;
    const { R, t } = adjustedMotion();
    const shown = {};
    for (const target of targets) {
      const points = target.points_lps_mm;
      if (points.length === 0) continue;
      const distance = new Float64Array(points.length);
      for (let n = 0; n < points.length; n++) {
        const p = points[n];
        const y = [0, 1, 2].map((r) => m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3] - t[r]);
        let sum = 0;
        for (let c = 0; c < 3; c++) {
          const back = R[0][c] * y[0] + R[1][c] * y[1] + R[2][c] * y[2];
          sum += (back - p[c]) ** 2;
        }
        distance[n] = Math.sqrt(sum);
      }
      distance.sort();
      const at = 0.95 * (distance.length - 1);
      const low = Math.floor(at);
      const high = Math.min(low + 1, distance.length - 1);
      const p95 = distance[low] + (distance[high] - distance[low]) * (at - low);
      const max = distance[distance.length - 1];
      shown[target.name] = { maxMm: max, p95Mm: p95 };
      const cell = document.querySelector('#residuals td[data-live="' + CSS.escape(target.name) + '"]');
      if (cell) {
        cell.textContent = max.toFixed(1) + " / " + p95.toFixed(1) + " mm";
        cell.dataset.maxMm = String(max);
      }
    }
    perf.targetResiduals = shown;
    perf.targetOffset = state.offset.slice(); // the nudges these residuals are for
  }

  function mvctMapping() {
    if (!state.after || config.baseToDaily === null) return null;
    const { R, t } = adjustedMotion();
    const o = grid.origin_mm;
    const s = grid.spacing_mm;
    const c = [0, 1, 2].map((r) => (R[r][0] * o[0] + R[r][1] * o[1] + R[r][2] * o[2] + t[r] - o[r]) / s);
    return { R, c };
  }

  function sampleMvct(x, y, z) {
    const [nx, ny, nz] = grid.size;
    if (!(x >= 0 && y >= 0 && z >= 0 && x <= nx - 1 && y <= ny - 1 && z <= nz - 1)) return NaN;
    const i0 = Math.min(x | 0, nx - 2);
    const j0 = Math.min(y | 0, ny - 2);
    const k0 = Math.min(z | 0, nz - 2);
    const fx = x - i0;
    const fy = y - j0;
    const fz = z - k0;
    const nxy = nx * ny;
    const idx = (k0 * ny + j0) * nx + i0;
    const v000 = mvct[idx], v100 = mvct[idx + 1], v010 = mvct[idx + nx], v110 = mvct[idx + nx + 1];
    const v001 = mvct[idx + nxy], v101 = mvct[idx + nxy + 1], v011 = mvct[idx + nxy + nx], v111 = mvct[idx + nxy + nx + 1];
    if (v000 === NO_DATA || v100 === NO_DATA || v010 === NO_DATA || v110 === NO_DATA ||
        v001 === NO_DATA || v101 === NO_DATA || v011 === NO_DATA || v111 === NO_DATA) return NaN;
    const a = v000 + (v100 - v000) * fx;
    const b = v010 + (v110 - v010) * fx;
    const c = v001 + (v101 - v001) * fx;
    const d = v011 + (v111 - v011) * fx;
    const e = a + (b - a) * fy;
    const f = c + (d - c) * fy;
    return e + (f - e) * fz;
  }

  // where pixel (u, v) of a plane is in index space: p = p0 + u·du + v·dv
  function planeGeometry(plane) {
    const [nx, ny, nz] = grid.size;
    const s = state.slice;
    if (plane === "axial") return { w: nx, h: ny, p0: [0, 0, s.axial], du: [1, 0, 0], dv: [0, 1, 0] };
    if (plane === "coronal") return { w: nx, h: nz, p0: [0, s.coronal, nz - 1], du: [1, 0, 0], dv: [0, 0, -1] };
    return { w: ny, h: nz, p0: [s.sagittal, 0, nz - 1], du: [0, 1, 0], dv: [0, 0, -1] };
  }

  function renderPlane(plane, mapping) {
    const g = planeGeometry(plane);
    const side = state.mode === "side";
    const width = side ? 2 * g.w : g.w;
    let buffer = buffers[plane];
    if (!buffer || buffer.canvas.width !== width || buffer.canvas.height !== g.h) {
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = g.h;
      const context = canvas.getContext("2d");
      buffer = buffers[plane] = { canvas, context, image: context.createImageData(width, g.h) };
    }
    const out = buffer.image.data;
    const [nx, ny] = grid.size;
    const alpha = state.opacity;
    const wPlan = Math.min(1, 2 * (1 - alpha));
    const wMvct = Math.min(1, 2 * alpha);
    for (let v = 0; v < g.h; v++) {
      for (let u = 0; u < g.w; u++) {
        const x = g.p0[0] + u * g.du[0] + v * g.dv[0];
        const y = g.p0[1] + u * g.du[1] + v * g.dv[1];
        const z = g.p0[2] + u * g.du[2] + v * g.dv[2];
        const index = (z * ny + y) * nx + x;
        const gp = grey(plan[index]);
        let value;
        if (mapping === null) {
          value = mvct[index] === NO_DATA ? NaN : mvct[index];
        } else {
          const R = mapping.R;
          const c = mapping.c;
          value = sampleMvct(
            R[0][0] * x + R[0][1] * y + R[0][2] * z + c[0],
            R[1][0] * x + R[1][1] * y + R[1][2] * z + c[1],
            R[2][0] * x + R[2][1] * y + R[2][2] * z + c[2],
          );
        }
        const gm = Number.isNaN(value) ? 0 : grey(value);
        let o = 4 * (v * width + u);
        if (side) {
          out[o] = out[o + 1] = out[o + 2] = gp;
          out[o + 3] = 255;
          o = 4 * (v * width + u + g.w);
          out[o] = out[o + 1] = out[o + 2] = gm;
        } else if (state.mode === "checker") {
          const even = (((u / CHECKER_VOXELS) | 0) + ((v / CHECKER_VOXELS) | 0)) % 2 === 0;
          out[o] = out[o + 1] = out[o + 2] = even ? gp : gm;
        } else {
          out[o] = gp * wPlan;
          out[o + 1] = gm * wMvct;
          out[o + 2] = gp * wPlan;
        }
        out[o + 3] = 255;
      }
    }
    buffer.context.putImageData(buffer.image, 0, 0);
    draw(plane, g, buffer.canvas, side);
  }

  function crosshair(plane) {
    const [, , nz] = grid.size;
    const s = state.slice;
    if (plane === "axial") return [s.sagittal, s.coronal];
    if (plane === "coronal") return [s.sagittal, nz - 1 - s.axial];
    return [s.coronal, nz - 1 - s.axial];
  }

  function isoPixel(plane) {
    const [, , nz] = grid.size;
    const [ci, cj, ck] = grid.isocenter_index;
    if (plane === "axial") return [ci, cj];
    if (plane === "coronal") return [ci, nz - 1 - ck];
    return [cj, nz - 1 - ck];
  }

  function draw(plane, g, source, side) {
    const canvas = canvases[plane];
    const scale = Math.max(1, Math.min(4, VIEW_PIXELS / Math.max(g.w, g.h)));
    const width = Math.round(source.width * scale);
    const height = Math.round(source.height * scale);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = true;
    context.drawImage(source, 0, 0, width, height);
    drawContours(context, g, scale, side);
    const [cu, cv] = crosshair(plane);
    const [iu, iv] = isoPixel(plane);
    const halves = side ? [0, g.w] : [0];
    context.lineWidth = 1;
    for (const dx of halves) {
      context.strokeStyle = "rgba(255, 215, 0, 0.45)";
      context.beginPath();
      context.moveTo((dx + cu + 0.5) * scale, 0);
      context.lineTo((dx + cu + 0.5) * scale, height);
      context.moveTo(dx * scale, (cv + 0.5) * scale);
      context.lineTo((dx + g.w) * scale, (cv + 0.5) * scale);
      context.stroke();
      context.strokeStyle = "rgba(0, 220, 255, 0.9)";
      context.beginPath();
      context.arc((dx + iu + 0.5) * scale, (iv + 0.5) * scale, 5, 0, 2 * Math.PI);
      context.stroke();
    }
    const offset = planeOffsetMm(plane);
    document.getElementById("pos-" + plane).textContent = (offset >= 0 ? "+" : "") + offset.toFixed(1) + " mm from isocentre";
  }

  // Structures: as planned on the planning CT (solid), and on the MVCT where today's anatomy of
  // each structure is after the couch moves by the correction on screen: a planning point p is
  // today at M·p (M: the registration, config.planningToDaily); the view shows the MVCT at M_C·q
  // ("after") or at q ("before"), so the anatomy of p appears at q with M_C·q = M·p. For each
  // view pixel q the structure bits are read at p = M⁻¹·(M_C·q) (nearest voxel). Side by side:
  // planned on the left, today's on the right; overlaid views draw today's dotted.
  function structureMapping(mapping) {
    const m = config.planningToDaily;
    if (m === null) return null;
    const o = grid.origin_mm;
    const s = grid.spacing_mm;
    const Rt = [0, 1, 2].map((r) => [m[0][r], m[1][r], m[2][r]]);
    const t = [m[0][3], m[1][3], m[2][3]];
    const dot = (row, v) => row[0] * v[0] + row[1] * v[1] + row[2] * v[2];
    // p = Rt·d + e in index space, e = (Rt·o − Rt·t − o) / s
    const e = [0, 1, 2].map((r) => (dot(Rt[r], o) - dot(Rt[r], t) - o[r]) / s);
    if (mapping === null) return { A: Rt, b: e };
    const A = [0, 1, 2].map((r) => [0, 1, 2].map((c) => Rt[r][0] * mapping.R[0][c] + Rt[r][1] * mapping.R[1][c] + Rt[r][2] * mapping.R[2][c]));
    const b = [0, 1, 2].map((r) => dot(Rt[r], mapping.c) + e[r]);
    return { A, b };
  }

  function drawContours(context, g, scale, side) {
    if (structureBits === null) return;
    let visible = 0;
    for (const structure of structures) if (structure.on) visible |= 1 << structure.bit;
    if (visible === 0) return;
    const [nx, ny, nz] = grid.size;
    const planned = new Int32Array(g.w * g.h);
    const moved = new Int32Array(g.w * g.h);
    const sm = structureMapping(mvctMapping());
    for (let v = 0; v < g.h; v++) {
      for (let u = 0; u < g.w; u++) {
        const x = g.p0[0] + u * g.du[0] + v * g.dv[0];
        const y = g.p0[1] + u * g.du[1] + v * g.dv[1];
        const z = g.p0[2] + u * g.du[2] + v * g.dv[2];
        planned[v * g.w + u] = structureBits[(z * ny + y) * nx + x] & visible;
        if (sm === null) continue;
        const A = sm.A;
        const i = Math.round(A[0][0] * x + A[0][1] * y + A[0][2] * z + sm.b[0]);
        const j = Math.round(A[1][0] * x + A[1][1] * y + A[1][2] * z + sm.b[1]);
        const k = Math.round(A[2][0] * x + A[2][1] * y + A[2][2] * z + sm.b[2]);
        if (i >= 0 && j >= 0 && k >= 0 && i < nx && j < ny && k < nz) {
          moved[v * g.w + u] = structureBits[(k * ny + j) * nx + i] & visible;
        }
      }
    }
    outlines(context, planned, g, scale, 0, false);
    if (sm !== null) outlines(context, moved, g, scale, side ? g.w : 0, !side);
  }

  // the edges between a structure's inside and outside pixels, 2 screen pixels wide
  function outlines(context, bits, g, scale, dx, dotted) {
    const thick = 2;
    const cell = Math.max(1, Math.round(scale));
    for (const structure of structures) {
      if (!structure.on) continue;
      const bit = 1 << structure.bit;
      context.fillStyle = "rgb(" + structure.color.join(",") + ")";
      for (let v = 0; v < g.h; v++) {
        for (let u = 0; u < g.w; u++) {
          if (dotted && ((u + v) & 1) === 1) continue;
          const inside = (bits[v * g.w + u] & bit) !== 0;
          const right = u + 1 < g.w && (bits[v * g.w + u + 1] & bit) !== 0;
          const below = v + 1 < g.h && (bits[(v + 1) * g.w + u] & bit) !== 0;
          if (inside !== right) {
            context.fillRect(Math.round((dx + u + 1) * scale) - 1, Math.round(v * scale), thick, cell);
          }
          if (inside !== below) {
            context.fillRect(Math.round((dx + u) * scale), Math.round((v + 1) * scale) - 1, cell, thick);
          }
          if (inside && u === 0) context.fillRect(Math.round(dx * scale), Math.round(v * scale), thick, cell);
          if (inside && v === 0) context.fillRect(Math.round((dx + u) * scale), 0, cell, thick);
        }
      }
    }
  }

  function planeOffsetMm(plane) {
    const [ci, cj, ck] = grid.isocenter_index;
    const index = { axial: state.slice.axial - ck, coronal: state.slice.coronal - cj, sagittal: state.slice.sagittal - ci }[plane];
    return index * grid.spacing_mm;
  }

  // since: when the user acted (a nudge), so lastFrameMs is input → next frame
  function render(since) {
    if (grid === null) return;
    const started = performance.now();
    const from = since === undefined ? started : since;
    const mapping = mvctMapping();
    for (const plane of PLANES) renderPlane(plane, mapping);
    perf.renders += 1;
    perf.lastRenderMs = performance.now() - started;
    requestAnimationFrame(() => {
      perf.lastFrameMs = performance.now() - from;
    });
  }

  // mean |MVCT − planning| (HU) over the body in the three current planes, as shown now: a
  // number for tests and benchmarks that the fusion got better or worse
  perf.mismatch = function () {
    const mapping = mvctMapping();
    const [nx, ny] = grid.size;
    let sum = 0;
    let count = 0;
    for (const plane of PLANES) {
      const g = planeGeometry(plane);
      for (let v = 0; v < g.h; v++) {
        for (let u = 0; u < g.w; u++) {
          const x = g.p0[0] + u * g.du[0] + v * g.dv[0];
          const y = g.p0[1] + u * g.du[1] + v * g.dv[1];
          const z = g.p0[2] + u * g.du[2] + v * g.dv[2];
          const index = (z * ny + y) * nx + x;
          if (plan[index] < -500) continue;
          let value = mvct[index];
          if (mapping !== null) {
            const R = mapping.R;
            const c = mapping.c;
            value = sampleMvct(
              R[0][0] * x + R[0][1] * y + R[0][2] * z + mapping.c[0],
              R[1][0] * x + R[1][1] * y + R[1][2] * z + c[1],
              R[2][0] * x + R[2][1] * y + R[2][2] * z + c[2],
            );
          }
          if (Number.isNaN(value) || value === NO_DATA) continue;
          sum += Math.abs(value - plan[index]);
          count += 1;
        }
      }
    }
    return count ? sum / count : NaN;
  };

  // --- the correction -------------------------------------------------------------------------

  function adjusted() {
    if (config.base === null) return null;
    const values = {};
    ALL_AXES.forEach((axis, n) => {
      values[axis] = config.base[axis] + state.offset[n];
    });
    return values;
  }

  function isAdjusted() {
    return state.offset.some((v) => Math.abs(v) > 1e-9);
  }

  function signed(value) {
    return (value >= 0 ? "+" : "−") + Math.abs(value).toFixed(2);
  }

  function showCorrection() {
    const values = adjusted();
    if (values === null) return;
    for (const axis of ALL_AXES) {
      const cell = document.getElementById("adj-" + axis);
      if (cell) {
        cell.textContent = signed(values[axis]) + (axis.endsWith("_mm") ? " mm" : " °");
        cell.classList.toggle("changed", Math.abs(state.offset[ALL_AXES.indexOf(axis)]) > 1e-9);
      }
    }
    const text = document.getElementById("offset-text");
    if (text) {
      text.textContent = isAdjusted()
        ? "adjusted by " +
          ALL_AXES.filter((axis, n) => n < 3 || Math.abs(state.offset[n]) > 1e-9)
            .map((axis) => {
              const n = ALL_AXES.indexOf(axis);
              return axis.replace(/_(mm|deg)$/, "") + " " + signed(state.offset[n]) + (n < 3 ? " mm" : "°");
            })
            .join(", ")
        : "no adjustment";
    }
    const large = TRANSLATIONS.some((axis) => Math.abs(values[axis]) >= config.largeShiftMm);
    const flag = document.getElementById("override-flag");
    if (flag) flag.hidden = !large;
    showDecision();
  }

  function showDecision() {
    const label = document.getElementById("approve-label");
    const meaning = document.getElementById("meaning-text");
    const reject = document.getElementById("decision-reject");
    if (!meaning) return;
    if (label) label.textContent = isAdjusted() ? "Approve the adjusted correction" : "Approve the correction";
    if (reject && reject.checked) meaning.textContent = "Rejected: re-image or re-set-up the patient";
    else meaning.textContent = isAdjusted() ? "Approved adjusted couch correction" : "Approved couch correction";
  }

  function nudge(delta) {
    if (config.base === null) return;
    const started = performance.now();
    for (let n = 0; n < 6; n++) {
      state.offset[n] = Math.round((state.offset[n] + (delta[n] || 0)) * 100) / 100;
    }
    if (!state.after) setState(true, false);
    showCorrection();
    updateTargetResiduals();
    render(started);
    perf.lastNudgeMs = performance.now() - started;
  }

  function nudgeOnScreen(plane, right, up) {
    const dir = SCREEN[plane];
    const lps = [0, 1, 2].map((r) => 0.5 * (right * dir.right[r] + up * dir.up[r]));
    const a = config.lpsToIec;
    nudge([0, 1, 2].map((r) => a[r][0] * lps[0] + a[r][1] * lps[1] + a[r][2] * lps[2]));
  }

  // --- controls -------------------------------------------------------------------------------

  function setState(after, draw = true) {
    state.after = after && config.baseToDaily !== null;
    document.getElementById("state-after").classList.toggle("on", state.after);
    document.getElementById("state-before").classList.toggle("on", !state.after);
    if (draw) render();
  }

  function select(attribute, value) {
    for (const button of document.querySelectorAll("[" + attribute + "]")) {
      button.classList.toggle("on", button.getAttribute(attribute) === value);
    }
  }

  for (const button of document.querySelectorAll("[data-mode]")) {
    button.addEventListener("click", () => {
      state.mode = button.dataset.mode;
      select("data-mode", state.mode);
      render();
    });
  }
  for (const button of document.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => {
      setWindow(button.dataset.preset);
      select("data-preset", state.preset);
      render();
    });
  }
  document.getElementById("state-before").addEventListener("click", () => setState(false));
  document.getElementById("state-after").addEventListener("click", () => setState(true));
  if (config.baseToDaily === null) {
    document.getElementById("state-after").disabled = true;
    setState(false, false);
  }
  document.getElementById("opacity").addEventListener("input", (event) => {
    state.opacity = Number(event.target.value) / 100;
    render();
  });
  for (const button of document.querySelectorAll("[data-axis]")) {
    button.addEventListener("click", () => {
      const delta = [0, 0, 0, 0, 0, 0];
      delta[ALL_AXES.indexOf(button.dataset.axis)] = Number(button.dataset.step);
      nudge(delta);
    });
  }
  const reset = document.getElementById("reset-nudge");
  if (reset) {
    reset.addEventListener("click", () => nudge(state.offset.map((v) => -v)));
  }
  document.addEventListener("keydown", (event) => {
    const tag = event.target && event.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    const keys = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
    const move = keys[event.key];
    if (!move || grid === null || config.base === null) return;
    event.preventDefault();
    nudgeOnScreen(state.active, move[0], move[1]);
  });

  // --- signing --------------------------------------------------------------------------------

  const form = document.getElementById("sign-form");
  if (form) {
    for (const radio of form.querySelectorAll("input[name=decision]")) {
      radio.addEventListener("change", showDecision);
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = document.getElementById("sign-error");
      const button = document.getElementById("sign-button");
      const data = new FormData(form);
      const values = adjusted();
      if (data.get("decision") === "approved" && values !== null) {
        for (const axis of ALL_AXES) data.set(axis, values[axis].toFixed(2));
      }
      button.disabled = true;
      error.hidden = true;
      try {
        const response = await fetch(config.signUrl, { method: "POST", body: new URLSearchParams(data), credentials: "same-origin" });
        if (response.status === 201) {
          window.location.reload();
          return;
        }
        let detail = "signing failed (" + response.status + ")";
        try {
          detail = (await response.json()).detail || detail;
        } catch (ignored) {}
        error.textContent = detail;
        error.hidden = false;
      } catch (failure) {
        error.textContent = "no connection to the server: nothing was signed";
        error.hidden = false;
      } finally {
        document.getElementById("sign-password").value = "";
        button.disabled = false;
      }
    });
  }

  showCorrection();
  load();
})();
