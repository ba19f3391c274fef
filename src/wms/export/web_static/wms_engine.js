/*
 * WMS engine for the browser: the streaming synthesiser of wms.synth (engine.py, kernels.py,
 * network.py, controls.py) in plain JavaScript.
 *
 * One file, two places: the page loads it with a classic <script> tag, and the AudioWorklet
 * module is built from the source text of wmsDefineEngine (see wms_worklet.js), so the live
 * instrument and renderOffline run exactly this code. Nothing here touches the DOM.
 *
 * Per control step of L = round(control_interval * sr) samples (docs/SYNTH.md):
 *   1. the control source (if any) applies its events for step k (sources at the end),
 *   2. one GRU step per playing voice (its own state, zeroed at note start),
 *   3. harmonic amplitudes = expm1 of the harmonic outputs, clipped at 0, normalised to
 *      full-band RMS TABLE_RMS, band-limited for the f0 the voice reaches (this step and,
 *      predicted, the next), one new one-cycle table per voice (the two tables flip); with a
 *      noise part, its band levels (expm1 of the last n_noise outputs) count in that level
 *      and become the gains of the voice's noise bands at the end of the step,
 * then per sample: both tables read at the same phase (4-point Lagrange), crossfaded with the
 * RMS correction c(a), plus the noise bands (one LCG draw per band through its 4th-order
 * band-pass, gains ramped over the step), x level ramp x ADSR x velocity; voices summed,
 * x gain, soft limit.
 *
 * process() allocates nothing: every buffer is made in the constructor.
 *
 * A voice's sound is the sum of its parts: HarmonicPart (the tables) and, for a model with a
 * noise part, NoisePart (wms.noise). Each has startVoice, readOutputs (its model outputs,
 * adding their squares to the level both share), finishStep and render; the envelope, level
 * and velocity are computed once per voice and sample (voiceGain) and shared by all parts.
 */
function wmsDefineEngine(scope) {
  'use strict';

  /** Waveform RMS of every normalised table before band limiting (tables.TABLE_RMS). */
  const TABLE_RMS = 0.25;
  /** Harmonics fade out from this fraction of Nyquist to Nyquist (tables.BAND_EDGE). */
  const BAND_EDGE = 0.9;
  /** Soft-limiter knee (engine.LIMIT_KNEE). */
  const LIMIT_KNEE = 0.9;
  /** Seconds rendered after the controls end, on top of the release (render.TAIL_SECONDS). */
  const TAIL_SECONDS = 0.05;
  /** The noise generator (wms.noise.LCG_A, LCG_C): state = (A state + C) mod 2**32. */
  const LCG_A = 1664525, LCG_C = 1013904223;
  /** Most second-order stages a noise band may have (wms.noise.MAX_STAGES). */
  const MAX_STAGES = 8;
  /** Impulse-response samples summed for a noise filter's power gain (wms.noise.GAIN_SAMPLES). */
  const GAIN_SAMPLES = 16384;
  /** Variance of the generator's samples, uniform on [-1, 1) (wms.noise.SOURCE_VARIANCE). */
  const SOURCE_VARIANCE = 1.0 / 3.0;
  const MIN_SAMPLE_RATE = 8000;
  const MAX_SAMPLE_RATE = 192000;
  const IDLE = 0, ATTACK = 1, DECAY = 2, SUSTAIN = 3, RELEASE = 4;

  class WmsError extends Error {
    constructor(message) {
      super(message);
      this.name = 'WmsError';
    }
  }

  /** Python's round(): halves go to the even neighbour. */
  function roundHalfEven(x) {
    const f = Math.floor(x);
    const d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  function midiToHz(note) {
    return 440.0 * Math.pow(2.0, (note - 69.0) / 12.0);
  }

  /** Raised-cosine band-limit gain of a component at f Hz (kernels.band_gain). */
  function bandGain(f, nyquist, edge) {
    if (f >= nyquist) return 0.0;
    const x = (f - edge * nyquist) / ((1.0 - edge) * nyquist);
    if (x <= 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    return 0.5 + 0.5 * Math.cos(Math.PI * x);
  }

  function checkSampleRate(sr) {
    if (!(Number.isInteger(sr) && sr >= MIN_SAMPLE_RATE && sr <= MAX_SAMPLE_RATE)) {
      throw new WmsError(
        `sample rate ${sr} is not supported; use a whole number of Hz from ${MIN_SAMPLE_RATE} ` +
          `to ${MAX_SAMPLE_RATE} (e.g. 44100, 48000)`);
    }
    return sr;
  }

  // ------------------------------------------------------------------------ model data
  function base64ToFloat32(b64) {
    const bin = atob(b64);
    const n = bin.length;
    if (n % 4 !== 0) throw new WmsError('weight data is not a whole number of float32 values');
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    // the export writes little-endian float32; read through a DataView so any host works
    const view = new DataView(bytes.buffer);
    const out = new Float32Array(n / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }

  /**
   * The exported window.WMS_MODEL (format "wms-web", version 1) -> the plain object the
   * engine takes: same fields, weights decoded to Float32Array. Call it where atob exists
   * (the page); the result can be passed to an AudioWorklet (structured clone).
   */
  function decodeModel(data) {
    if (!data || data.format !== 'wms-web') {
      throw new WmsError('model.js does not hold a WMS web model (format "wms-web")');
    }
    if (data.version !== 1) {
      throw new WmsError(`WMS web model version ${data.version} is not supported (this engine reads 1)`);
    }
    const weights = {};
    for (const key of Object.keys(data.model.weights)) {
      const w = data.model.weights[key];
      const arr = base64ToFloat32(w.data);
      const size = w.shape.reduce((a, b) => a * b, 1);
      if (arr.length !== size) {
        throw new WmsError(`weight ${key}: ${arr.length} values, shape ${w.shape} needs ${size}`);
      }
      weights[key] = arr;
    }
    const model = Object.assign({}, data.model, { weights });
    return {
      format: data.format,
      version: data.version,
      interface: data.interface,
      synth: data.synth,
      model,
      training_map: data.training_map,
      noise: data.noise || null,
      controls: data.controls || null,
    };
  }

  // ------------------------------------------------------------------------ network
  // All of the network's numbers (packed weights, biases, the GRU state of every voice, the
  // input row, scratch vectors) live in one Float32Array, F. A Linear layer's weight W [m, n]
  // (row-major, torch's layout) is stored in blocks of 8 rows, interleaved:
  // F[off + (j/8)*8n + 8i + c] = W[j+c, i], rows padded with zeros to a multiple of 8, so the
  // eight outputs of a block share each x[i] load. F is a WebAssembly memory when the host
  // has WebAssembly SIMD (the kernel below does these products 4 lanes at a time); otherwise
  // the same layout is read by affineJS.

  /** y = b + W x for a packed layer L = {off, b, n, mp} of F, x at F[xOff], y at F[yOff]. */
  function affineJS(F, L, xOff, yOff) {
    const n = L.n, mp = L.mp, b = L.b;
    for (let j = 0; j < mp; j += 8) {
      let p = L.off + j * n;
      let s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0, s5 = 0.0, s6 = 0.0, s7 = 0.0;
      for (let i = 0; i < n; i++, p += 8) {
        const xi = F[xOff + i];
        s0 += F[p] * xi;
        s1 += F[p + 1] * xi;
        s2 += F[p + 2] * xi;
        s3 += F[p + 3] * xi;
        s4 += F[p + 4] * xi;
        s5 += F[p + 5] * xi;
        s6 += F[p + 6] * xi;
        s7 += F[p + 7] * xi;
      }
      const y = yOff + j, c = b + j;
      F[y] = F[c] + s0;
      F[y + 1] = F[c + 1] + s1;
      F[y + 2] = F[c + 2] + s2;
      F[y + 3] = F[c + 3] + s3;
      F[y + 4] = F[c + 4] + s4;
      F[y + 5] = F[c + 5] + s5;
      F[y + 6] = F[c + 6] + s6;
      F[y + 7] = F[c + 7] + s7;
    }
  }

  /**
   * The bytes of a WebAssembly module (SIMD) exporting affine(W, b, x, n, mp, y), the same
   * product as affineJS on byte addresses of the imported memory env.mem: for each block of
   * 8 rows, f32x4 accumulators over pairs of columns (4 independent sums), then + bias.
   * Written out instruction by instruction here: no toolchain, nothing fetched.
   */
  function affineWasmBytes() {
    const uleb = (n) => {
      const out = [];
      do {
        let byte = n & 0x7f;
        n >>>= 7;
        if (n) byte |= 0x80;
        out.push(byte);
      } while (n);
      return out;
    };
    const sleb = (n) => {
      const out = [];
      for (;;) {
        const byte = n & 0x7f;
        n >>= 7;
        if ((n === 0 && !(byte & 0x40)) || (n === -1 && byte & 0x40)) return out.concat(byte);
        out.push(byte | 0x80);
      }
    };
    const W = 0, B = 1, X = 2, N = 3, M = 4, Y = 5, J = 6, I = 7, P = 8, XP = 9;
    const A = [10, 11, 12, 13]; // v128 accumulators: rows 0-3 / 4-7 of columns i / i+1
    const get = (l) => [0x20, l], set = (l) => [0x21, l];
    const i32 = (v) => [0x41, ...sleb(v)];
    const add = [0x6a], shl = [0x74], geU = [0x4f], ltU = [0x49];
    const simd = (op) => [0xfd, ...uleb(op)];
    const vload = (off) => [...simd(0), 4, ...uleb(off)];
    const vstore = (off) => [...simd(11), 4, ...uleb(off)];
    const fload = (off) => [0x2a, 2, ...uleb(off)];
    const splat = simd(19), fadd = simd(228), fmul = simd(230);
    const vzero = [...simd(12), ...new Array(16).fill(0)];
    const block = [0x02, 0x40], loop = [0x03, 0x40], iff = [0x04, 0x40], end = [0x0b];
    const br = (d) => [0x0c, d], brIf = (d) => [0x0d, d];
    // acc += W[p + wOff .. +4] * x[xp + xOff]
    const mac = (acc, wOff, xOff) => [
      ...get(P), ...vload(wOff), ...get(XP), ...fload(xOff), ...splat, ...fmul,
      ...get(acc), ...fadd, ...set(acc),
    ];
    const body = [
      ...get(W), ...set(P),
      ...i32(0), ...set(J),
      ...block, ...loop, // rows, 8 at a time
      ...get(J), ...get(M), ...geU, ...brIf(1),
      ...vzero, ...set(A[0]), ...vzero, ...set(A[1]), ...vzero, ...set(A[2]), ...vzero, ...set(A[3]),
      ...get(X), ...set(XP),
      ...i32(0), ...set(I),
      ...block, ...loop, // column pairs
      ...get(I), ...i32(1), ...add, ...get(N), ...geU, ...brIf(1),
      ...mac(A[0], 0, 0), ...mac(A[1], 16, 0), ...mac(A[2], 32, 4), ...mac(A[3], 48, 4),
      ...get(P), ...i32(64), ...add, ...set(P),
      ...get(XP), ...i32(8), ...add, ...set(XP),
      ...get(I), ...i32(2), ...add, ...set(I),
      ...br(0), ...end, ...end,
      ...get(I), ...get(N), ...ltU, ...iff, // odd last column
      ...mac(A[0], 0, 0), ...mac(A[1], 16, 0),
      ...get(P), ...i32(32), ...add, ...set(P),
      ...end,
      // y[j .. j+8) = (a0 + a2, a1 + a3) + b[j .. j+8)
      ...get(Y), ...get(J), ...i32(2), ...shl, ...add,
      ...get(A[0]), ...get(A[2]), ...fadd,
      ...get(B), ...get(J), ...i32(2), ...shl, ...add, ...vload(0), ...fadd, ...vstore(0),
      ...get(Y), ...get(J), ...i32(2), ...shl, ...add,
      ...get(A[1]), ...get(A[3]), ...fadd,
      ...get(B), ...get(J), ...i32(2), ...shl, ...add, ...vload(16), ...fadd, ...vstore(16),
      ...get(J), ...i32(8), ...add, ...set(J),
      ...br(0), ...end, ...end,
      ...end,
    ];
    const locals = [0x02, 0x04, 0x7f, 0x04, 0x7b]; // 4 x i32 (J, I, P, XP), 4 x v128
    const code = [...locals, ...body];
    const section = (id, content) => [id, ...uleb(content.length), ...content];
    const str = (t) => [t.length, ...Array.from(t, (c) => c.charCodeAt(0))];
    return new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
      ...section(1, [0x01, 0x60, 0x06, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x00]),
      ...section(2, [0x01, ...str('env'), ...str('mem'), 0x02, 0x00, 0x01]),
      ...section(3, [0x01, 0x00]),
      ...section(7, [0x01, ...str('affine'), 0x00, 0x00]),
      ...section(10, [0x01, ...uleb(code.length), ...code]),
    ]);
  }

  let wasmModule; // compiled once per thread; null: no WebAssembly SIMD here
  function affineWasmModule() {
    if (wasmModule === undefined) {
      wasmModule = null;
      try {
        const bytes = affineWasmBytes();
        if (typeof WebAssembly === 'object' && WebAssembly.validate(bytes)) wasmModule = new WebAssembly.Module(bytes);
      } catch (err) {
        wasmModule = null; // e.g. a Content-Security-Policy without 'wasm-unsafe-eval'
      }
    }
    return wasmModule;
  }

  /**
   * WMSNet (Linear+ReLU -> GRU layers -> Linear+ReLU -> Linear + output activation) for
   * nVoices voices, one voice per step() call: input row this.x [D] -> this.y [K], the
   * voice's GRU state in this.h [nVoices * L * H] updated in place.
   * PyTorch's GRU cell: r = s(Wir x + bir + Whr h + bhr), z likewise,
   * n = tanh(Win x + bin + r (Whn h + bhn)), h' = n + z (h - n).
   * simd: use the WebAssembly SIMD kernel when available (default true); this.simd says
   * whether it is used.
   */
  class WmsNet {
    constructor(m, nVoices, simd) {
      const w = m.weights;
      const need = (k, size) => {
        if (!w[k]) throw new WmsError(`the model has no weight ${k}`);
        if (w[k].length !== size) throw new WmsError(`weight ${k} holds ${w[k].length} values, expected ${size}`);
        return w[k];
      };
      this.nIn = m.n_inputs;
      this.nOut = m.n_outputs;
      this.enc = m.encoder_size;
      this.hid = m.hidden_size;
      this.nLayers = m.num_layers;
      this.act = { none: 0, relu: 1, softplus: 2 }[m.output_activation];
      if (this.act === undefined) {
        throw new WmsError(`unknown output activation ${m.output_activation}`);
      }
      const H = this.hid, E = this.enc, D = this.nIn, K = this.nOut, NL = this.nLayers;
      let top = 0;
      const alloc = (n) => {
        const off = top;
        top += Math.ceil(n / 8) * 8; // 32-byte aligned, room for padded rows
        return off;
      };
      const layer = (wk, bk, mRows, nCols) => ({
        W: need(wk, mRows * nCols),
        bias: need(bk, mRows),
        m: mRows,
        n: nCols,
        mp: Math.ceil(mRows / 8) * 8,
        off: alloc(Math.ceil(mRows / 8) * 8 * nCols),
        b: alloc(mRows),
      });
      this.L = [layer('input_encoder.0.weight', 'input_encoder.0.bias', E, D)];
      for (let l = 0; l < NL; l++) {
        this.L.push(layer(`gru.weight_ih_l${l}`, `gru.bias_ih_l${l}`, 3 * H, l === 0 ? E : H));
        this.L.push(layer(`gru.weight_hh_l${l}`, `gru.bias_hh_l${l}`, 3 * H, H));
      }
      this.L.push(layer('dense_layers.0.weight', 'dense_layers.0.bias', H, H));
      this.L.push(layer('dense_layers.2.weight', 'dense_layers.2.bias', K, H));
      this.stateSize = NL * H;
      const xOff = (this.xOff = alloc(D));
      const hOff = (this.hOff = alloc(nVoices * NL * H));
      this.eOff = alloc(E);
      this.giOff = alloc(3 * H);
      this.ghOff = alloc(3 * H);
      this.dOff = alloc(H);
      const yOff = (this.yOff = alloc(K));
      const mod = simd === false ? null : affineWasmModule();
      this.simd = !!mod;
      let buffer;
      if (mod) {
        const mem = new WebAssembly.Memory({ initial: Math.ceil((4 * top) / 65536) });
        this.wasmAffine = new WebAssembly.Instance(mod, { env: { mem } }).exports.affine;
        buffer = mem.buffer;
      } else {
        buffer = new ArrayBuffer(4 * top);
      }
      const F = (this.F = new Float32Array(buffer));
      for (const L of this.L) {
        for (let j = 0; j < L.m; j++) {
          const blk = L.off + (j >> 3) * 8 * L.n, c = j & 7;
          for (let i = 0; i < L.n; i++) F[blk + 8 * i + c] = L.W[j * L.n + i];
        }
        F.set(L.bias, L.b);
        L.W = L.bias = null; // packed; the model's arrays are not kept
      }
      this.x = F.subarray(xOff, xOff + D);
      this.h = F.subarray(hOff, hOff + nVoices * NL * H);
      this.y = F.subarray(yOff, yOff + K);
    }

    _affine(L, xOff, yOff) {
      if (this.simd) this.wasmAffine(4 * L.off, 4 * L.b, 4 * xOff, L.n, L.mp, 4 * yOff);
      else affineJS(this.F, L, xOff, yOff);
    }

    /** One step of voice v: this.x -> this.y, state this.h[v * L * H ..] in place. */
    step(v) {
      const F = this.F, H = this.hid, E = this.enc, NL = this.nLayers;
      const e = this.eOff, gi = this.giOff, gh = this.ghOff, d = this.dOff;
      this._affine(this.L[0], this.xOff, e);
      for (let j = 0; j < E; j++) if (F[e + j] < 0) F[e + j] = 0;
      let inp = e;
      for (let l = 0; l < NL; l++) {
        const ho = this.hOff + (v * NL + l) * H;
        this._affine(this.L[1 + 2 * l], inp, gi);
        this._affine(this.L[2 + 2 * l], ho, gh);
        for (let j = 0; j < H; j++) {
          const r = 1.0 / (1.0 + Math.exp(-(F[gi + j] + F[gh + j])));
          const z = 1.0 / (1.0 + Math.exp(-(F[gi + H + j] + F[gh + H + j])));
          const n = Math.tanh(F[gi + 2 * H + j] + r * F[gh + 2 * H + j]);
          F[ho + j] = n + z * (F[ho + j] - n);
        }
        inp = ho;
      }
      this._affine(this.L[1 + 2 * NL], inp, d);
      for (let j = 0; j < H; j++) if (F[d + j] < 0) F[d + j] = 0;
      const y = this.yOff, K = this.nOut, act = this.act;
      this._affine(this.L[2 + 2 * NL], d, y);
      if (act === 1) {
        for (let j = 0; j < K; j++) if (F[y + j] < 0) F[y + j] = 0;
      } else if (act === 2) {
        for (let j = 0; j < K; j++) {
          const v2 = F[y + j];
          if (v2 <= 20.0) F[y + j] = Math.log1p(Math.exp(v2));
        }
      }
    }
  }

  // ------------------------------------------------------------------------ harmonic part
  /**
   * The tables of every voice (kernels.finish_step / build_table / the table half of
   * render_voices). Each voice owns two guarded one-cycle tables (table_size + 3 samples:
   * 1 before, 2 after the cycle) and one oscillator phase in cycles.
   */
  class HarmonicPart {
    constructor(nVoices, outputs, tableSize, sampleRate, phases) {
      this.nV = nVoices;
      this.H = outputs.n_harmonics;
      this.off = outputs.harmonic_offset;
      this.stride = outputs.harmonic_stride;
      if (!(this.H >= 1)) throw new WmsError('the model has no harmonic outputs');
      const last = this.off + this.stride * (this.H - 1);
      if (last >= outputs.n_outputs) {
        throw new WmsError(`harmonic ${this.H} reads output ${last}, the model has ${outputs.n_outputs}`);
      }
      this.S = tableSize;
      this.G = tableSize + 3;
      this.sr = sampleRate;
      const H = this.H, G = this.G, S = tableSize;
      // row h-1: cos(2 pi h j / S + theta_h) for j = -1 .. S+1, h*j reduced mod S in integers
      // (tables.cosine_basis): theta_h = 0, or Schroeder's -pi h (h - 1) / H, reduced with
      // m = h (h - 1) mod 2H to n = (2H k - m S) mod 2HS over 2HS
      this.basis = new Float32Array(H * G);
      this.even = phases !== 'schroeder'; // a zero-phase table is even: half is summed
      const H2 = 2 * H;
      for (let h = 1; h <= H; h++) {
        const m = (h * (h - 1)) % H2;
        for (let j = -1; j <= S + 1; j++) {
          const k = (((h * j) % S) + S) % S;
          if (phases === 'schroeder') {
            const n = (((H2 * k - m * S) % (H2 * S)) + H2 * S) % (H2 * S);
            this.basis[(h - 1) * G + j + 1] = Math.cos((2.0 * Math.PI * n) / (H2 * S));
          } else {
            this.basis[(h - 1) * G + j + 1] = Math.cos((2.0 * Math.PI * k) / S);
          }
        }
      }
      this.tables = new Float32Array(nVoices * 2 * G);
      this.ampsPrev = new Float32Array(nVoices * H);
      this.ampsNext = new Float32Array(nVoices * H);
      this.gp = new Float32Array(H);
      this.gn = new Float32Array(H);
      this.w = new Float32Array(H); // amplitude x gain of the table being built
      this.phase = new Float64Array(nVoices);
      this.cur = new Int32Array(nVoices); // which of the two tables is the newest
      this.fbl = new Float64Array(nVoices); // f0 the newest table was band-limited for
      this.moments = new Float64Array(nVoices * 3); // r_p^2, r_n^2, m_pn
    }

    /** A voice starting from silence: phase 0. */
    startVoice(v) {
      this.phase[v] = 0.0;
    }

    /**
     * tables[tOff ..] = sum_h amps[aOff + h] * gains[h] * basis[h] (kernels.build_table).
     * A zero-phase cosine sum is even, T(j) = T(S - j), so only half the cycle is summed and
     * the rest mirrored (Schroeder phases: the whole guarded cycle); four harmonics per pass
     * over it (half the loads and stores of one at a time); harmonics above the last non-zero
     * one cost nothing.
     */
    _build(tOff, aOff, amps, gains) {
      const t = this.tables, G = this.G, B = this.basis, w = this.w, S = this.S;
      let hEnd = 0;
      for (let h = 0; h < this.H; h++) {
        w[h] = Math.fround(amps[aOff + h] * gains[h]);
        if (w[h] !== 0.0) hEnd = h + 1;
      }
      if (!this.even) {
        // every guarded sample j = -1 .. S + 1 (indices 0 .. G - 1) from its basis column
        t.fill(0.0, tOff, tOff + G);
        let h = 0;
        for (; h + 3 < hEnd; h += 4) {
          const a0 = w[h], a1 = w[h + 1], a2 = w[h + 2], a3 = w[h + 3];
          const r0 = h * G, r1 = r0 + G, r2 = r1 + G, r3 = r2 + G;
          for (let j = 0; j < G; j++) {
            t[tOff + j] += a0 * B[r0 + j] + a1 * B[r1 + j] + a2 * B[r2 + j] + a3 * B[r3 + j];
          }
        }
        for (; h < hEnd; h++) {
          const a = w[h], r = h * G;
          if (a === 0.0) continue;
          for (let j = 0; j < G; j++) t[tOff + j] += a * B[r + j];
        }
        return;
      }
      // table index i holds phase j = i - 1; sum j = 0 .. S/2 (indices 1 .. S/2 + 1)
      const lo = tOff + 1, n = (S >> 1) + 1;
      t.fill(0.0, lo, lo + n);
      let h = 0;
      for (; h + 3 < hEnd; h += 4) {
        const a0 = w[h], a1 = w[h + 1], a2 = w[h + 2], a3 = w[h + 3];
        const r0 = h * G + 1, r1 = r0 + G, r2 = r1 + G, r3 = r2 + G;
        for (let j = 0; j < n; j++) {
          t[lo + j] += a0 * B[r0 + j] + a1 * B[r1 + j] + a2 * B[r2 + j] + a3 * B[r3 + j];
        }
      }
      for (; h < hEnd; h++) {
        const a = w[h], r = h * G + 1;
        if (a === 0.0) continue;
        for (let j = 0; j < n; j++) t[lo + j] += a * B[r + j];
      }
      for (let j = n; j <= S + 1; j++) t[lo + j] = t[lo + ((S - j + S) % S)];
      t[tOff] = t[lo + 1]; // j = -1 is j = 1
    }

    /**
     * Model outputs y[yOff ..] of voice v -> its new (unscaled) amplitudes, last step's new
     * ones becoming the previous (unless fresh: no previous table yet); returns ss plus their
     * squares (the first half of kernels.finish_step).
     */
    readOutputs(v, y, yOff, fresh, ss) {
      const H = this.H, aOff = v * H, ap = this.ampsPrev, an = this.ampsNext;
      for (let h = 0; h < H; h++) {
        let a = Math.expm1(y[yOff + this.off + this.stride * h]);
        if (a < 0.0) a = 0.0;
        if (!fresh) ap[aOff + h] = an[aOff + h];
        an[aOff + h] = a;
        a = an[aOff + h];
        ss += a * a;
      }
      return ss;
    }

    /**
     * The amplitudes read by readOutputs, times scale (the voice's level normalisation) ->
     * its next table (kernels.finish_step). fStart / fEnd: Hz at the start / end of this
     * step; fresh: no previous table yet.
     */
    finishStep(v, fStart, fEnd, fresh, scale) {
      const H = this.H, aOff = v * H, ap = this.ampsPrev, an = this.ampsNext;
      const gp = this.gp, gn = this.gn, nyq = 0.5 * this.sr;
      const fmax = Math.max(fStart, fEnd);
      const fNext = Math.max(fmax, fEnd * Math.max(1.0, fEnd / fStart));
      let fPrev = fresh ? fNext : this.fbl[v];
      const rebuildPrev = fresh || fPrev < fmax;
      if (fPrev < fmax) fPrev = fmax;
      this.fbl[v] = fNext;
      let pp = 0.0, nn = 0.0, pn = 0.0;
      for (let h = 0; h < H; h++) {
        const x = an[aOff + h] * scale;
        an[aOff + h] = x;
        if (fresh) ap[aOff + h] = x;
        gp[h] = bandGain((h + 1) * fPrev, nyq, BAND_EDGE);
        gn[h] = bandGain((h + 1) * fNext, nyq, BAND_EDGE);
        const p = Math.fround(ap[aOff + h] * gp[h]);
        const n = x * gn[h];
        pp += p * p;
        nn += n * n;
        pn += p * n;
      }
      const cur = 1 - this.cur[v];
      this.cur[v] = cur;
      const base = v * 2 * this.G;
      this._build(base + cur * this.G, aOff, an, gn);
      if (rebuildPrev) this._build(base + (1 - cur) * this.G, aOff, ap, gp);
      const m = 3 * v;
      this.moments[m] = 0.5 * pp;
      this.moments[m + 1] = 0.5 * nn;
      this.moments[m + 2] = 0.5 * pn;
    }

    /**
     * Add samples i0 .. n-1 of voice v to out[outOff + i]: previous and next table read at
     * the same phase, crossfaded, RMS-corrected, times gain[i] (level x envelope x velocity).
     * Sample i is sample j0 + i of a step of L samples; inc0 + dInc * a is the phase
     * increment (cycles per sample) at crossfade position a.
     */
    render(v, out, outOff, i0, n, j0, L, gain, inc0, dInc) {
      const G = this.G, S = this.S, s = S;
      const base = v * 2 * G;
      const tn = base + this.cur[v] * G;
      const tp = base + (1 - this.cur[v]) * G;
      const t = this.tables;
      const m = 3 * v;
      const rp2 = this.moments[m], rn2 = this.moments[m + 1], mpn = this.moments[m + 2];
      const rp = Math.sqrt(rp2), rn = Math.sqrt(rn2);
      let ph = this.phase[v];
      for (let i = i0; i < n; i++) {
        const a = (j0 + i + 1) / L;
        const x = ph * s;
        let k = Math.floor(x);
        const f = x - k;
        if (k >= S) k -= S;
        const cm1 = -f * (f - 1.0) * (f - 2.0) * (1.0 / 6.0);
        const c0 = (f + 1.0) * (f - 1.0) * (f - 2.0) * 0.5;
        const c1 = -(f + 1.0) * f * (f - 2.0) * 0.5;
        const c2 = (f + 1.0) * f * (f - 1.0) * (1.0 / 6.0);
        const p = tp + k, q = tn + k;
        const sp = cm1 * t[p] + c0 * t[p + 1] + c1 * t[p + 2] + c2 * t[p + 3];
        const sn = cm1 * t[q] + c0 * t[q + 1] + c1 * t[q + 2] + c2 * t[q + 3];
        const b = 1.0 - a;
        const ms = b * b * rp2 + a * a * rn2 + 2.0 * a * b * mpn;
        const c = ms > 1e-20 ? (b * rp + a * rn) / Math.sqrt(ms) : 1.0;
        out[outOff + i] += (b * sp + a * sn) * c * gain[i];
        ph += inc0 + dInc * a;
        if (ph >= 1.0) ph -= Math.floor(ph);
      }
      // samples before i0 (a delayed onset) hold the phase, as the kernel's `continue`
      this.phase[v] = ph;
    }

    /** Copy voice v's newest table (one cycle, guards dropped) into out [S]. */
    copyTable(v, out) {
      const off = v * 2 * this.G + this.cur[v] * this.G + 1;
      for (let j = 0; j < this.S; j++) out[j] = this.tables[off + j];
    }

    /** Voice v's newest harmonic amplitudes, band-limited as played, into out [H]. */
    copyAmplitudes(v, out) {
      const aOff = v * this.H;
      const f = this.fbl[v], nyq = 0.5 * this.sr;
      for (let h = 0; h < this.H; h++) out[h] = this.ampsNext[aOff + h] * bandGain((h + 1) * f, nyq, BAND_EDGE);
    }
  }

  // ------------------------------------------------------------------------ noise part
  /** numpy's pairwise sum of a[lo .. lo + n) (np.sum's order: the same float64 result). */
  function pairwiseSum(a, lo, n) {
    if (n < 8) {
      let r = 0.0;
      for (let i = 0; i < n; i++) r += a[lo + i];
      return r;
    }
    if (n <= 128) {
      let r0 = a[lo], r1 = a[lo + 1], r2 = a[lo + 2], r3 = a[lo + 3];
      let r4 = a[lo + 4], r5 = a[lo + 5], r6 = a[lo + 6], r7 = a[lo + 7];
      let i = 8;
      for (; i < n - (n % 8); i += 8) {
        const p = lo + i;
        r0 += a[p]; r1 += a[p + 1]; r2 += a[p + 2]; r3 += a[p + 3];
        r4 += a[p + 4]; r5 += a[p + 5]; r6 += a[p + 6]; r7 += a[p + 7];
      }
      let res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));
      for (; i < n; i++) res += a[lo + i];
      return res;
    }
    let n2 = Math.floor(n / 2);
    n2 -= n2 % 8;
    return pairwiseSum(a, lo, n2) + pairwiseSum(a, lo + n2, n - n2);
  }

  /**
   * The noise filter bank at output rate sampleRate (wms.noise.band_filters, the same
   * float64 arithmetic): band b filters y[n] = b0 (x[n] - x[n-2]) - a1 y[n-1] - a2 y[n-2]
   * `stages` times (RBJ band-pass, constant 0 dB peak, at the band's geometric centre - half
   * the top edge for the band from 0 Hz - stage Q = centre / width x stageQ, normalised by
   * 1 + alpha); coef = fade / sqrt(2 SOURCE_VARIANCE G) with G the cascade's white-noise
   * power gain (sum of its impulse response squared over GAIN_SAMPLES samples, summed as
   * np.sum does) and fade the harmonics' band-limit gain at the centre (0: a zero filter).
   * edges: [B + 1] Hz; stageQ and stages as model.js states them (noise.filter). Returns
   * {b0, a1, a2, coef}, Float64Array [B] each.
   */
  function noiseFilters(edges, sampleRate, stageQ, stages) {
    const B = edges.length - 1, nyq = 0.5 * sampleRate;
    const b0 = new Float64Array(B), a1 = new Float64Array(B), a2 = new Float64Array(B);
    const coef = new Float64Array(B);
    const h2 = new Float64Array(GAIN_SAMPLES);
    for (let b = 0; b < B; b++) {
      const lo = edges[b], hi = edges[b + 1];
      const fc = lo > 0 ? Math.sqrt(lo * Math.max(hi, 0.0)) : 0.5 * hi;
      const fade = bandGain(fc, nyq, BAND_EDGE);
      if (!(fade > 0)) continue;
      const w0 = (2.0 * Math.PI * fc) / sampleRate;
      const alpha = Math.sin(w0) / (2.0 * stageQ * (fc / (hi - lo)));
      const c0 = alpha / (1.0 + alpha), c1 = (-2.0 * Math.cos(w0)) / (1.0 + alpha);
      const c2 = (1.0 - alpha) / (1.0 + alpha);
      b0[b] = c0;
      a1[b] = c1;
      a2[b] = c2;
      // the cascade's impulse response, the same TDF-II recursion as the per-sample loop
      const s = new Float64Array(2 * stages);
      for (let n = 0; n < GAIN_SAMPLES; n++) {
        let u = n === 0 ? 1.0 : 0.0;
        for (let k = 0; k < 2 * stages; k += 2) {
          const bx = c0 * u;
          u = bx + s[k];
          s[k] = s[k + 1] - c1 * u;
          s[k + 1] = -bx - c2 * u;
        }
        h2[n] = u * u;
      }
      coef[b] = fade / Math.sqrt(2.0 * SOURCE_VARIANCE * pairwiseSum(h2, 0, GAIN_SAMPLES));
    }
    return { b0, a1, a2, coef };
  }

  /** The noise generator's start state for voice slot v (wms.noise.noise_seed). */
  function noiseSeed(v) {
    return Math.imul(2654435761, v + 1) >>> 0;
  }

  /**
   * The noise part of every voice (wms.noise; kernels.finish_step / render_voices): one
   * uniform white-noise generator per voice slot (seeded once, never reset), B band-passes
   * in parallel (S identical TDF-II biquad stages each, state zeroed when an idle voice
   * starts), band b's output times its gain, which moves linearly over the step from last
   * step's to g_b = v_b x scale x coef_b (v_b = expm1 of output offset + b, clipped at 0).
   */
  class NoisePart {
    constructor(nVoices, outputs, noise, sampleRate) {
      const B = (this.B = outputs.n_noise);
      const off = (this.off = outputs.n_outputs - B);
      const edges = noise && noise.band_edges_hz;
      if (!noise || noise.n_bands !== B || noise.offset !== off || !edges || edges.length !== B + 1) {
        throw new WmsError(
          `the model has ${B} noise outputs from output ${off} but model.js describes ` +
            `${noise ? `${noise.n_bands} bands from output ${noise.offset}` : 'no noise part'}; export it again`);
      }
      const g = noise.generator || {};
      const flt = noise.filter || {};
      const S = (this.S = flt.stages);
      const stagesOk = Number.isInteger(S) && S >= 1 && S <= MAX_STAGES;
      // the stage Q that puts S stages' -3 dB points at the band edges (wms.noise.stage_q)
      const q = stagesOk ? Math.sqrt(Math.pow(2.0, 1.0 / S) - 1.0) : NaN;
      if (g.lcg_a !== LCG_A || g.lcg_c !== LCG_C || flt.gain_samples !== GAIN_SAMPLES ||
          !stagesOk || !(Math.abs(flt.stage_q - q) <= 1e-12 * q)) {
        throw new WmsError('the noise part of model.js uses other generator or filter constants than this engine');
      }
      const f = noiseFilters(edges, sampleRate, flt.stage_q, S);
      this.b0 = f.b0;
      this.a1 = f.a1;
      this.a2 = f.a2;
      this.coef = f.coef;
      this.gPrev = new Float64Array(nVoices * B);
      this.gNext = new Float64Array(nVoices * B);
      this.state = new Float64Array(nVoices * B * 2 * S);
      this.rng = new Int32Array(nVoices); // the generators' states, their bits as int32
      for (let v = 0; v < nVoices; v++) this.rng[v] = noiseSeed(v) | 0;
    }

    /** A voice starting from silence: its filters at rest (the generator runs on). */
    startVoice(v) {
      const n = this.B * 2 * this.S;
      this.state.fill(0.0, v * n, (v + 1) * n);
    }

    /** Voice v's band levels from y[yOff ..] (last step's gains become the previous ones);
     * returns ss plus their squares. */
    readOutputs(v, y, yOff, fresh, ss) {
      const B = this.B, o = v * B, gp = this.gPrev, gn = this.gNext;
      for (let b = 0; b < B; b++) {
        let a = Math.fround(Math.expm1(y[yOff + this.off + b]));
        if (a < 0.0) a = 0.0;
        if (!fresh) gp[o + b] = gn[o + b];
        gn[o + b] = a;
        ss += a * a;
      }
      return ss;
    }

    /** The levels read by readOutputs -> the band gains at the end of this step. */
    finishStep(v, fStart, fEnd, fresh, scale) {
      const B = this.B, o = v * B, gp = this.gPrev, gn = this.gNext, coef = this.coef;
      for (let b = 0; b < B; b++) {
        const x = gn[o + b] * scale * coef[b];
        gn[o + b] = x;
        if (fresh) gp[o + b] = x;
      }
    }

    /** Add samples i0 .. n-1 of voice v's noise to out[outOff + i], times gain[i]
     * (arguments as HarmonicPart.render). */
    render(v, out, outOff, i0, n, j0, L, gain) {
      const B = this.B, o = v * B, S2 = 2 * this.S, so = S2 * o;
      const gp = this.gPrev, gn = this.gNext, st = this.state;
      const b0 = this.b0, a1 = this.a1, a2 = this.a2;
      let rng = this.rng[v];
      for (let i = i0; i < n; i++) {
        const a = (j0 + i + 1) / L;
        const bb = 1.0 - a;
        let ns = 0.0;
        for (let m = 0, k0 = so; m < B; m++, k0 += S2) {
          // the state's 32 bits as an int32 (fast in V8); >>> 0 reads them unsigned
          rng = (Math.imul(rng, LCG_A) + LCG_C) | 0;
          const c0 = b0[m], c1 = a1[m], c2 = a2[m];
          let u = (rng >>> 0) * (1.0 / 2147483648.0) - 1.0;
          for (let k = k0; k < k0 + S2; k += 2) {
            const bx = c0 * u;
            u = bx + st[k];
            st[k] = st[k + 1] - c1 * u;
            st[k + 1] = -bx - c2 * u;
          }
          ns += (bb * gp[o + m] + a * gn[o + m]) * u;
        }
        out[outOff + i] += ns * gain[i];
      }
      this.rng[v] = rng;
    }
  }

  // ------------------------------------------------------------------------ engine
  /**
   * The engine's settings (model.synth with options.synth applied), checked: what
   * new WmsEngine(model, options) would refuse, without building anything.
   */
  function checkSettings(model, options) {
    const opt = options || {};
    const cfg = Object.assign({}, model.synth, opt.synth || {});
    for (const k of Object.keys(opt.synth || {})) {
      if (!(k in model.synth)) throw new WmsError(`unknown synth setting ${JSON.stringify(k)}; known: ${Object.keys(model.synth).join(', ')}`);
    }
    checkSampleRate(opt.sampleRate === undefined ? cfg.sample_rate : opt.sampleRate);
    if (!(Number.isInteger(cfg.voices) && cfg.voices >= 1 && cfg.voices <= 256)) {
      throw new WmsError(`synth.voices = ${cfg.voices} must be a whole number from 1 to 256`);
    }
    if (!(Number.isInteger(cfg.table_size) && cfg.table_size >= 4)) throw new WmsError(`synth.table_size = ${cfg.table_size} must be a whole number >= 4`);
    if (!(Number.isFinite(cfg.control_interval) && cfg.control_interval > 0)) throw new WmsError(`synth.control_interval = ${cfg.control_interval} must be > 0 s`);
    for (const name of ['attack', 'decay', 'release', 'glide', 'pitch_bend_range', 'gain']) {
      const v = cfg[name];
      if (!(Number.isFinite(v) && v >= 0)) throw new WmsError(`synth.${name} = ${v} must be a finite number >= 0`);
    }
    if (!(cfg.sustain >= 0 && cfg.sustain <= 1)) throw new WmsError(`synth.sustain = ${cfg.sustain} must be in [0, 1]`);
    if (cfg.phases !== undefined && cfg.phases !== 'zero' && cfg.phases !== 'schroeder') {
      throw new WmsError(`synth.phases = ${JSON.stringify(cfg.phases)} is not one of zero, schroeder`);
    }
    if (cfg.out_of_range !== 'clamp' && cfg.out_of_range !== 'extrapolate') {
      throw new WmsError(`synth.out_of_range = ${JSON.stringify(cfg.out_of_range)} is not one of clamp, extrapolate`);
    }
    return cfg;
  }

  /**
   * Polyphonic streaming WMS synthesiser (engine.SynthEngine).
   *
   * model: decodeModel(window.WMS_MODEL) (or the same object after a structured clone).
   * options: {sampleRate (Hz, integer), maxBlock (largest n for process, default 8192),
   *           synth: overrides of model.synth fields (voices, attack, ..., gain),
   *           simd: false to keep the network in plain JS (default: WebAssembly SIMD when
   *           the host has it; this.net.simd tells)}.
   * Control changes take effect at the next control-step boundary; noteOn/noteOff with
   * delay place the onset / release start `delay` samples into the following step.
   */
  class WmsEngine {
    constructor(model, options) {
      const opt = options || {};
      const iface = model.interface;
      const cfg = checkSettings(model, opt);
      this.model = model;
      this.iface = iface;
      this.config = cfg;
      const sr = (this.sampleRate = opt.sampleRate === undefined ? cfg.sample_rate : opt.sampleRate);
      this.stepLen = Math.max(1, roundHalfEven(cfg.control_interval * sr));
      const V = (this.nVoices = cfg.voices);
      this.maxBlock = opt.maxBlock || 8192;
      this.net = new WmsNet(model.model, V, opt.simd);
      this.names = iface.control_names.slice();
      this.nTimbre = this.names.length;
      this.includeV = !!iface.include_voicedness;
      const d = this.nTimbre + 1 + (this.includeV ? 1 : 0);
      if (this.net.nIn !== d) {
        throw new WmsError(`the network takes ${this.net.nIn} inputs, the interface describes ${d}`);
      }
      this.ranges = iface.control_ranges.map((r) => [r[0], r[1]]);
      this.clamp = cfg.out_of_range !== 'extrapolate';
      this.fmin = iface.pitch.fmin;
      this.logEps = iface.pitch.log_eps;
      const fr = iface.pitch.f0_range;
      this.f0Lo = this.clamp && fr ? fr[0] : 0.0;
      this.f0Hi = this.clamp && fr ? fr[1] : Infinity;

      // per voice
      const H = this.net.hid, NL = this.net.nLayers, K = this.net.nOut;
      this.hState = this.net.h; // the net's memory: [voice][layer][H]
      this.stateSize = NL * H;
      this.logf = new Float64Array(V); // log2 f0 reached at the end of the current step
      this.logfTarget = new Float64Array(V); // the note's log2 f0 (before bend)
      this.voiced = new Float64Array(V).fill(1.0);
      this.level = new Float64Array(V).fill(1.0);
      this.levelTarget = new Float64Array(V).fill(1.0);
      this.velocity = new Float64Array(V);
      this.inc0 = new Float64Array(V);
      this.inc1 = new Float64Array(V);
      this.lev0 = new Float64Array(V);
      this.lev1 = new Float64Array(V);
      this.env = new Float64Array(V);
      this.relInc = new Float64Array(V);
      this.stage = new Int32Array(V);
      this.pending = new Uint8Array(V);
      this.fresh = new Uint8Array(V);
      this.delayOn = new Int32Array(V);
      this.delayOff = new Int32Array(V);
      this.note = new Int32Array(V).fill(-1);
      this.age = new Float64Array(V);
      this.releasedAt = new Float64Array(V);

      // per step
      this.idx = new Int32Array(V);
      this.nv = 0;
      this.x = this.net.x;
      this.y = this.net.y;
      // a prediction quieter than this is not normalised up (ModelInterface.level_floor)
      this.levelFloor = iface.level_floor || 0.0;
      this.harmonic = new HarmonicPart(V, iface.outputs, cfg.table_size, sr, cfg.phases || 'zero');
      this.parts = [this.harmonic];
      // the noise part (wms.noise): none for a harmonics-only model
      this.noise = iface.outputs.n_noise > 0 ? new NoisePart(V, iface.outputs, model.noise, sr) : null;
      if (this.noise) this.parts.push(this.noise);
      this.gainBuf = new Float64Array(this.stepLen);
      this.out = new Float64Array(this.maxBlock);

      this.timbre = new Float64Array(this.nTimbre);
      this._tmp = new Float64Array(this.nTimbre);
      this.setTimbre(iface.control_defaults);
      this.bend = 0.0;
      this.counter = 0;
      this.lastLogf = null;
      this.source = null;
      this.stepIndex = 0;
      this.pos = 0;
      this.samplesLimited = 0;
      this.samplesRendered = 0;
      this.attInc = cfg.attack * sr < 1 ? 1.0 : 1.0 / (cfg.attack * sr);
      this.decInc = cfg.decay * sr < 1 ? 1.0 : (1.0 - cfg.sustain) / (cfg.decay * sr);
      this.glideCoef = cfg.glide > 0 ? Math.exp(-this.stepLen / (cfg.glide * sr)) : 0.0;
      this.releaseSamples = cfg.release * sr;
    }

    // ---------------------------------------------------------------- controls
    checkF0(f0, where) {
      if (!(Number.isFinite(f0) && f0 > 0 && f0 < 0.5 * this.sampleRate)) {
        throw new WmsError(
          `${where || 'f0'} = ${f0} Hz is out of range: need 0 < f0 < ${0.5 * this.sampleRate} ` +
            `(half the output rate ${this.sampleRate} Hz)`);
      }
      return f0;
    }

    controlIndex(name) {
      const i = this.names.indexOf(name);
      if (i < 0) {
        throw new WmsError(`unknown control ${JSON.stringify(name)}; valid controls are ${this.names.join(', ')}`);
      }
      return i;
    }

    /** The out-of-range rule on one timbre value (clamp to its training range). */
    applyRange(i, value) {
      if (!Number.isFinite(value)) throw new WmsError(`control ${this.names[i]} = ${value} is not finite`);
      if (!this.clamp) return value;
      const r = this.ranges[i];
      return Math.min(Math.max(value, r[0]), r[1]);
    }

    /** All timbre controls (array of nTimbre numbers), range rule applied; next step on. */
    setTimbre(values) {
      if (!values || values.length !== this.nTimbre) {
        throw new WmsError(`expected ${this.nTimbre} timbre controls (${this.names.join(', ')})`);
      }
      for (let i = 0; i < this.nTimbre; i++) this._tmp[i] = this.applyRange(i, values[i]);
      this.timbre.set(this._tmp);
    }

    /** Timbre values already range-checked (per-step automation; no allocation). */
    loadTimbre(values, offset) {
      for (let i = 0; i < this.nTimbre; i++) this.timbre[i] = values[offset + i];
    }

    /** One timbre control by index or name. */
    setControl(which, value) {
      const i = typeof which === 'number' ? which : this.controlIndex(which);
      this.timbre[i] = this.applyRange(i, value);
    }

    /** Global pitch bend in semitones, clamped to +-synth.pitch_bend_range. */
    setPitchBend(semitones) {
      const r = this.config.pitch_bend_range;
      this.bend = Math.min(Math.max(semitones, -r), r);
    }

    _checkDelay(delay) {
      const d = delay || 0;
      if (!(Number.isInteger(d) && d >= 0 && d < this.stepLen)) {
        throw new WmsError(`delay = ${delay} samples: need 0 <= delay < ${this.stepLen}`);
      }
      return d;
    }

    _allocate() {
      const V = this.nVoices;
      for (let v = 0; v < V; v++) if (this.stage[v] === IDLE && !this.pending[v]) return v;
      let best = -1;
      for (let v = 0; v < V; v++) {
        if (this.stage[v] === RELEASE && (best < 0 || this.releasedAt[v] < this.releasedAt[best])) best = v;
      }
      if (best >= 0) return best;
      best = 0;
      for (let v = 1; v < V; v++) if (this.age[v] < this.age[best]) best = v;
      return best;
    }

    /**
     * Start a voice at f0 Hz with velocity 0..1 (linear gain, default 1) and an id `note`
     * (default -1; noteOff(note) releases it); returns its slot. It sounds from the next
     * step boundary (+ `delay` samples, 0 <= delay < stepLen) with a zero GRU state; when every voice
     * is busy, the oldest released voice, else the oldest, is stolen (it keeps its phase
     * and envelope level and crossfades from its old table).
     */
    noteOn(f0, velocity, note, delay) {
      const f = this.checkF0(f0, 'note f0');
      const vel = velocity === undefined ? 1.0 : velocity;
      if (!(Number.isFinite(vel) && vel >= 0 && vel <= 1)) throw new WmsError(`velocity = ${velocity} must be in [0, 1]`);
      const v = this._allocate();
      this.counter += 1;
      this.age[v] = this.counter;
      const lf = Math.log2(f);
      if (this.stage[v] === IDLE) {
        let start = lf;
        if (this.config.glide > 0 && this.lastLogf !== null) start = this.lastLogf;
        this.logf[v] = start;
        this.env[v] = 0.0;
        this.level[v] = this.levelTarget[v] = 1.0;
        for (let i = 0; i < this.parts.length; i++) this.parts[i].startVoice(v);
        this.fresh[v] = 1;
        this.delayOn[v] = this._checkDelay(delay);
      }
      this.delayOff[v] = 0;
      this.lastLogf = lf;
      this.logfTarget[v] = lf;
      this.velocity[v] = vel;
      this.voiced[v] = 1.0;
      this.pending[v] = 1;
      this.note[v] = note === undefined ? -1 : note;
      return v;
    }

    _releasable(v) {
      const s = this.stage[v];
      return s === ATTACK || s === DECAY || s === SUSTAIN || this.pending[v] !== 0;
    }

    _release(v, delay) {
      if (delay > 0 && this._releasable(v)) {
        this.delayOff[v] = Math.max(delay, this.delayOn[v] + 1);
        this.releasedAt[v] = this.counter;
        this.counter += 1;
        return;
      }
      if (this.pending[v] && this.stage[v] === IDLE) {
        this.pending[v] = 0; // released before it ever sounded
        return;
      }
      if (this._releasable(v)) {
        this.pending[v] = 0;
        this.stage[v] = RELEASE;
        const r = this.releaseSamples;
        this.relInc[v] = r >= 1 ? this.env[v] / r : 1.0;
        this.releasedAt[v] = this.counter;
        this.counter += 1;
      }
    }

    /** Release every voice playing `note` (the id given to noteOn), now or after `delay`
     * samples (0 <= delay < stepLen, counted from the next step boundary if the voice has
     * not started yet). */
    noteOff(note, delay) {
      const d = this._checkDelay(delay);
      for (let v = 0; v < this.nVoices; v++) {
        if (this.note[v] === note && this._releasable(v)) this._release(v, d);
      }
    }

    /** Release voice slot v (as noteOff). */
    releaseVoice(v, delay) {
      this._release(v, this._checkDelay(delay));
    }

    allNotesOff(delay) {
      const d = this._checkDelay(delay);
      for (let v = 0; v < this.nVoices; v++) this._release(v, d);
    }

    /** Per-voice targets, checked once up front by the caller (engine.load_voice). */
    loadVoice(v, log2f0, voicedness, level) {
      this.logfTarget[v] = log2f0;
      this.voiced[v] = voicedness;
      this.levelTarget[v] = level;
    }

    get activeVoices() {
      let n = 0;
      for (let v = 0; v < this.nVoices; v++) if (this.stage[v] !== IDLE || this.pending[v]) n++;
      return n;
    }

    /** The most recently started voice that is sounding (or -1). */
    newestVoice() {
      let best = -1;
      for (let v = 0; v < this.nVoices; v++) {
        if (this.stage[v] !== IDLE && (best < 0 || this.age[v] > this.age[best])) best = v;
      }
      return best;
    }

    // ---------------------------------------------------------------- audio
    _beginStep() {
      if (this.source !== null) this.source.atStep(this, this.stepIndex);
      const V = this.nVoices;
      // collect_voices: start pending voices, list the playing ones
      for (let v = 0; v < V; v++) {
        if (this.pending[v]) {
          this.pending[v] = 0;
          this.stage[v] = ATTACK;
          this.hState.fill(0.0, v * this.stateSize, (v + 1) * this.stateSize);
          if (this.fresh[v]) this.level[v] = this.levelTarget[v];
        }
      }
      let nv = 0;
      for (let v = 0; v < V; v++) if (this.stage[v] !== IDLE) this.idx[nv++] = v;
      this.nv = nv;
      const sr = this.sampleRate, nt = this.nTimbre, x = this.x, y = this.y;
      for (let q = 0; q < nv; q++) {
        const v = this.idx[q];
        // begin_step: pitch (glide, bend) and level ramps, the model input row
        const fStart = Math.pow(2.0, this.logf[v]);
        const tgt = this.logfTarget[v] + this.bend / 12.0;
        const lf = tgt + (this.logf[v] - tgt) * this.glideCoef;
        this.logf[v] = lf;
        const fEnd = Math.pow(2.0, lf);
        this.inc0[v] = fStart / sr;
        this.inc1[v] = fEnd / sr;
        this.lev0[v] = this.level[v];
        this.lev1[v] = this.levelTarget[v];
        this.level[v] = this.levelTarget[v];
        for (let c = 0; c < nt; c++) x[c] = this.timbre[c];
        const fm = Math.min(Math.max(fEnd, this.f0Lo), this.f0Hi);
        x[nt] = Math.log(Math.max(fm, this.fmin) - this.fmin + this.logEps);
        if (this.includeV) x[nt + 1] = Math.min(Math.max(this.voiced[v], 0.0), 1.0);
        this.net.step(v);
        // finish_step: the level of all parts' outputs, r = sqrt(sum of squares / 2), sets
        // the scale; tables and noise gains from it (same f0s as the kernel: increments x sr)
        const fresh = this.fresh[v] !== 0;
        const fs = this.inc0[v] * sr, fe = this.inc1[v] * sr;
        let ss = 0.0;
        for (let i = 0; i < this.parts.length; i++) ss = this.parts[i].readOutputs(v, y, 0, fresh, ss);
        const r = Math.sqrt(0.5 * ss);
        const scale = r > 0.0 ? TABLE_RMS / Math.max(r, this.levelFloor) : 0.0;
        for (let i = 0; i < this.parts.length; i++) this.parts[i].finishStep(v, fs, fe, fresh, scale);
        this.fresh[v] = 0;
      }
    }

    /**
     * Per-sample gain of voice v for samples 0 .. n-1 of this block (ADSR x level ramp x
     * velocity, the envelope half of kernels.render_voices) into gainBuf; returns the first
     * sample that sounds (a delayed onset holds the voice silent before it).
     */
    _voiceGain(v, n, j0) {
      const L = this.stepLen, g = this.gainBuf;
      const att = this.attInc, dec = this.decInc, sus = this.config.sustain;
      const relS = this.releaseSamples;
      let st = this.stage[v], el = this.env[v], rel = this.relInc[v];
      let dOn = this.delayOn[v], dOff = this.delayOff[v];
      const l0 = this.lev0[v], dl = this.lev1[v] - l0, vel = this.velocity[v];
      let first = 0;
      for (let i = 0; i < n; i++) {
        const a = (j0 + i + 1) / L;
        if (dOn > 0) {
          dOn -= 1;
          if (dOff > 0) dOff -= 1; // dOff > dOn: it cannot run out while the onset waits
          first = i + 1;
          continue;
        }
        if (st === ATTACK) {
          el += att;
          if (el >= 1.0) {
            el = 1.0;
            st = DECAY;
          }
        } else if (st === DECAY) {
          el -= dec;
          if (el <= sus) {
            el = sus;
            st = SUSTAIN;
          }
        } else if (st === SUSTAIN) {
          el = sus;
        } else if (st === RELEASE) {
          el -= rel;
          if (el <= 0.0) {
            el = 0.0;
            st = IDLE;
          }
        }
        // a release delayed by D samples takes its first step at sample D (kernels.render_voices)
        if (dOff > 0) {
          dOff -= 1;
          if (dOff === 0 && st !== IDLE) {
            st = RELEASE;
            rel = relS >= 1.0 ? el / relS : 1.0;
          }
        }
        g[i] = (l0 + dl * a) * el * vel;
      }
      this.stage[v] = st;
      this.env[v] = el;
      this.relInc[v] = rel;
      this.delayOn[v] = dOn;
      this.delayOff[v] = dOff;
      return first;
    }

    /**
     * Render the next n samples into out (a Float32Array or any array, n <= maxBlock).
     * State carries over between calls, so any block sizes give the same samples.
     * Returns out.
     */
    process(out, n) {
      if (!(n >= 0 && n <= this.maxBlock)) throw new WmsError(`block of ${n} samples: need 0 <= n <= ${this.maxBlock}`);
      const acc = this.out;
      acc.fill(0.0, 0, n);
      let done = 0;
      const L = this.stepLen;
      while (done < n) {
        if (this.pos === 0) this._beginStep();
        const m = Math.min(n - done, L - this.pos);
        for (let q = 0; q < this.nv; q++) {
          const v = this.idx[q];
          const i0 = this.inc0[v], di = this.inc1[v] - i0;
          const first = this._voiceGain(v, m, this.pos);
          for (let p = 0; p < this.parts.length; p++) {
            this.parts[p].render(v, acc, done, first, m, this.pos, L, this.gainBuf, i0, di);
          }
        }
        done += m;
        this.pos += m;
        if (this.pos === L) {
          this.pos = 0;
          this.stepIndex += 1;
        }
      }
      this.samplesLimited += this._finishBlock(acc, n);
      this.samplesRendered += n;
      for (let i = 0; i < n; i++) out[i] = acc[i];
      return out;
    }

    /** Master gain, then the safety soft limit above LIMIT_KNEE (kernels.finish_block). */
    _finishBlock(acc, n) {
      const gain = this.config.gain, knee = LIMIT_KNEE;
      let peak = 0.0;
      for (let i = 0; i < n; i++) {
        const x = acc[i] * gain;
        acc[i] = x;
        const ax = Math.abs(x);
        if (ax > peak) peak = ax;
      }
      let limited = 0;
      if (peak > knee) {
        const w = 1.0 - knee;
        for (let i = 0; i < n; i++) {
          const x = acc[i], ax = Math.abs(x);
          if (ax > knee) {
            limited += 1;
            const y = knee + w * Math.tanh((ax - knee) / w);
            acc[i] = x > 0 ? y : -y;
          }
        }
      }
      return limited;
    }
  }

  // ------------------------------------------------------------------------ scores
  // A score is plain data (structured-clonable) describing a whole render: built on the
  // page by buildScore, turned into a source inside the engine's thread by makeSource.

  function controlCurve(where, name, spec) {
    // a number (constant) or [[t, v], ...] breakpoints (linear, held outside)
    if (typeof spec === 'number') {
      if (!Number.isFinite(spec)) throw new WmsError(`${where}: control ${name} = ${spec} is not finite`);
      return { t: [0], v: [spec] };
    }
    if (!Array.isArray(spec) || spec.length === 0) {
      throw new WmsError(`${where}: control ${name} must be a number or a non-empty list of [time, value] pairs`);
    }
    const t = [], v = [];
    for (let i = 0; i < spec.length; i++) {
      const p = spec[i];
      if (!Array.isArray(p) || p.length !== 2 || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) {
        throw new WmsError(`${where}: control ${name}[${i}] must be a [time, value] pair of finite numbers`);
      }
      if (p[0] < 0) throw new WmsError(`${where}: control ${name}[${i}]: time ${p[0]} s is negative`);
      if (i > 0 && p[0] < t[i - 1]) throw new WmsError(`${where}: times of control ${name} must not decrease`);
      if (name === 'f0' && !(p[1] > 0)) throw new WmsError(`${where}: f0 = ${p[1]} Hz must be > 0`);
      if (name === 'level' && p[1] < 0) throw new WmsError(`${where}: level = ${p[1]} must be >= 0`);
      t.push(p[0]);
      v.push(p[1]);
    }
    return { t, v };
  }

  /** np.interp, same arithmetic: linear between breakpoints, held outside. */
  function interp(x, t, v) {
    const n = t.length;
    if (x < t[0]) return v[0];
    if (x >= t[n - 1]) return v[n - 1];
    let lo = 0, hi = n - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (t[mid] <= x) lo = mid;
      else hi = mid;
    }
    if (t[lo] === x) return v[lo];
    const slope = (v[hi] - v[lo]) / (t[hi] - t[lo]);
    return slope * (x - t[lo]) + v[lo];
  }

  /**
   * renderOffline options -> a score (controls.curves_trajectory / MidiSource semantics):
   *  - {f0, seconds, controls}: one note (velocity 1) following the controls, released
   *    after the last step (like `wms render --f0 F --seconds S --controls FILE`);
   *  - {notes: [{note | f0, velocity, start, end}], controls, seconds}: note on/off events
   *    at their own sample (like a MIDI file), timbre controls as automation.
   * controls: {name: number | [[t, v], ...]}; names are the timbre controls, plus f0,
   * voicedness and level for a single note. Missing controls take the training-map median,
   * f0 the median voiced training f0. synth: overrides of model.synth (voices, release, ...);
   * simd: false runs the network in plain JS (see WmsNet).
   */
  function buildScore(model, opts, sampleRate) {
    const o = opts || {};
    const where = 'renderOffline';
    const known = ['f0', 'seconds', 'sampleRate', 'controls', 'notes', 'synth', 'simd', 'normalize', 'gain'];
    for (const k of Object.keys(o)) {
      if (!known.includes(k)) throw new WmsError(`${where}: unknown option ${JSON.stringify(k)}; known: ${known.join(', ')}`);
    }
    const iface = model.interface;
    const cfg = checkSettings(model, { sampleRate, synth: o.synth });
    const sr = sampleRate;
    const L = Math.max(1, roundHalfEven(cfg.control_interval * sr));
    const stepS = L / sr;
    const names = iface.control_names;
    const special = o.notes ? [] : ['f0', 'voicedness', 'level'];
    const curves = {};
    const controls = o.controls || {};
    if (typeof controls !== 'object' || Array.isArray(controls)) {
      throw new WmsError(`${where}: controls must be an object {name: value or [[t, v], ...]}`);
    }
    for (const name of Object.keys(controls)) {
      if (!names.includes(name) && !special.includes(name)) {
        throw new WmsError(
          `${where}: unknown control ${JSON.stringify(name)}; valid names are ` +
            `${special.concat(names).join(', ')}`);
      }
      curves[name] = controlCurve(where, name, controls[name]);
    }
    if (o.seconds !== undefined && !(Number.isFinite(o.seconds) && o.seconds > 0 && o.seconds <= 3600)) {
      throw new WmsError(`${where}: seconds = ${o.seconds} must be a positive number of at most 3600`);
    }
    const clampOn = cfg.out_of_range !== 'extrapolate';
    const clampT = (i, x) => (clampOn ? Math.min(Math.max(x, iface.control_ranges[i][0]), iface.control_ranges[i][1]) : x);
    const value = (name, t, dflt) => (curves[name] ? interp(t, curves[name].t, curves[name].v) : dflt);
    const curveEnd = () => {
      let e = 0;
      for (const k of Object.keys(curves)) e = Math.max(e, curves[k].t[curves[k].t.length - 1]);
      return e;
    };
    const timbreRows = (nSteps) => {
      const nt = names.length, out = new Float64Array(nSteps * nt);
      for (let k = 0; k < nSteps; k++) {
        const t = (k + 1) * stepS;
        for (let i = 0; i < nt; i++) out[k * nt + i] = clampT(i, value(names[i], t, iface.control_defaults[i]));
      }
      return out;
    };
    const nyq = 0.5 * sr;

    if (o.notes) {
      if (o.f0 !== undefined) throw new WmsError(`${where}: f0 applies to a single note; give each of the notes its own note or f0`);
      if (!Array.isArray(o.notes) || o.notes.length === 0) throw new WmsError(`${where}: notes must be a non-empty list`);
      const events = [];
      let end = 0;
      o.notes.forEach((nt, i) => {
        const w = `${where}: notes[${i}]`;
        if (typeof nt !== 'object' || nt === null) throw new WmsError(`${w} must be an object {note | f0, velocity, start, end}`);
        let f0;
        let id;
        if (nt.note !== undefined) {
          if (!(Number.isInteger(nt.note) && nt.note >= 0 && nt.note <= 127)) throw new WmsError(`${w}: note = ${nt.note} must be a MIDI note number 0..127`);
          f0 = midiToHz(nt.note);
          id = nt.note;
        } else if (nt.f0 !== undefined) {
          f0 = nt.f0;
          id = 1000 + i; // its own id, so only its note-off releases it
        } else {
          throw new WmsError(`${w} has neither note nor f0`);
        }
        if (!(Number.isFinite(f0) && f0 > 0 && f0 < nyq)) throw new WmsError(`${w}: f0 = ${f0} Hz is out of range: need 0 < f0 < ${nyq}`);
        const vel = nt.velocity === undefined ? 1.0 : nt.velocity;
        if (!(Number.isFinite(vel) && vel >= 0 && vel <= 1)) throw new WmsError(`${w}: velocity = ${nt.velocity} must be in [0, 1] (MIDI velocity / 127)`);
        const start = nt.start === undefined ? 0 : nt.start;
        if (!(Number.isFinite(start) && start >= 0)) throw new WmsError(`${w}: start = ${nt.start} s must be >= 0`);
        if (!(Number.isFinite(nt.end) && nt.end >= start)) throw new WmsError(`${w}: end = ${nt.end} s must be a time >= start`);
        events.push({ time: start, on: 1, f0, id, vel, order: 2 * i });
        events.push({ time: nt.end, on: 0, f0, id, vel: 0, order: 2 * i + 1 });
        end = Math.max(end, nt.end);
      });
      // time order; at equal times in the order the notes were given (on before its off)
      events.sort((a, b) => a.time - b.time || a.order - b.order);
      const duration = o.seconds !== undefined ? Math.min(end, o.seconds) : end;
      const nSteps = Math.max(1, Math.ceil((duration + cfg.release + TAIL_SECONDS) * sr / L) + 1);
      return {
        kind: 'notes',
        sampleRate: sr,
        synth: o.synth || null,
        events,
        duration,
        automation: Object.keys(curves).length ? timbreRows(nSteps) : null,
        nSteps,
        total: Math.ceil((duration + cfg.release + TAIL_SECONDS) * sr),
      };
    }

    // a single note following the controls
    if (o.f0 !== undefined && !(Number.isFinite(o.f0) && o.f0 > 0 && o.f0 < nyq)) {
      throw new WmsError(`${where}: f0 = ${o.f0} Hz is out of range: need 0 < f0 < ${nyq} (half the output rate ${sr} Hz)`);
    }
    const dur = o.seconds !== undefined ? o.seconds : Object.keys(curves).length ? curveEnd() : 2.0;
    if (!(dur > 0)) throw new WmsError(`${where}: duration is ${dur} s; give seconds or later control times`);
    const n = Math.max(1, Math.ceil(dur / stepS - 1e-9));
    const f0d = o.f0 !== undefined ? o.f0 : iface.pitch.f0_default;
    const f0 = new Float64Array(n), log2f0 = new Float64Array(n), voiced = new Float64Array(n), level = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const t = (k + 1) * stepS;
      const f = value('f0', t, f0d);
      if (!(f > 0 && f < nyq)) {
        throw new WmsError(`${where}: f0 = ${f} Hz at ${t.toFixed(3)} s is out of range: need 0 < f0 < ${nyq} (half the output rate ${sr} Hz)`);
      }
      f0[k] = f;
      log2f0[k] = Math.log2(f);
      voiced[k] = value('voicedness', t, 1.0);
      level[k] = value('level', t, 1.0);
    }
    return {
      kind: 'trajectory',
      sampleRate: sr,
      synth: o.synth || null,
      nSteps: n,
      f0,
      timbre: timbreRows(n),
      log2f0,
      voiced,
      level,
      total: Math.ceil((n * stepS + cfg.release + TAIL_SECONDS) * sr),
    };
  }

  /** One voice following per-step targets (controls.Trajectory.at_step). */
  class TrajectorySource {
    constructor(score) {
      this.s = score;
      this.voice = -1;
    }

    atStep(engine, k) {
      const s = this.s, nt = engine.nTimbre;
      if (k === 0) {
        this.voice = engine.noteOn(s.f0[0], 1.0);
        engine.loadTimbre(s.timbre, 0);
      }
      if (k < s.nSteps) {
        engine.loadVoice(this.voice, s.log2f0[k], s.voiced[k], s.level[k]);
        engine.loadTimbre(s.timbre, k * nt);
      } else if (k === s.nSteps) {
        engine.releaseVoice(this.voice, 0);
      }
    }
  }

  /** Note on/off events at their own sample, like a MIDI file (controls.MidiSource). */
  class NoteSource {
    constructor(score) {
      this.s = score;
      this.ptr = 0;
      this.ended = false;
    }

    atStep(engine, k) {
      const s = this.s, sr = engine.sampleRate, L = engine.stepLen, ev = s.events;
      const end = ((k + 1) * L) / sr;
      if (s.automation && k < s.nSteps) engine.loadTimbre(s.automation, k * engine.nTimbre);
      while (this.ptr < ev.length && ev[this.ptr].time < end && ev[this.ptr].time <= s.duration) {
        const e = ev[this.ptr++];
        const offset = Math.min(Math.max(roundHalfEven(e.time * sr) - k * L, 0), L - 1);
        if (e.on) engine.noteOn(e.f0, e.vel, e.id, offset);
        else engine.noteOff(e.id, offset);
      }
      if (end >= s.duration && !this.ended) {
        this.ended = true;
        engine.allNotesOff(Math.min(Math.max(roundHalfEven(s.duration * sr) - k * L, 0), L - 1));
      }
    }
  }

  // wms render's loudness policy (wms.synth.render: NORMALIZE, _policy_gain), the same
  // arithmetic: 20 ms blocks' mean squares, the sounding ones (within 60 dB of the loudest)
  // set to -20 dBFS RMS with the peak at most -1 dBFS ('loudness'), or the peak at -1 dBFS
  // ('peak'), or nothing ('none'); then gainDb; never amplified below -70 dBFS; clipped to +-1.
  const TARGET_RMS_DB = -20.0, PEAK_CEILING_DB = -1.0, SILENT_DB = -70.0;
  function applyLoudness(y, sampleRate, normalize, gainDb) {
    if (!['loudness', 'peak', 'none'].includes(normalize)) {
      throw new WmsError(`normalize = ${JSON.stringify(normalize)} is not one of loudness, peak, none`);
    }
    const lb = Math.max(1, roundHalfEven(0.02 * sampleRate));
    const nb = Math.floor(y.length / lb);
    const ms = new Float64Array(nb);
    let peak = 0, loud = 0;
    for (let i = 0; i < y.length; i++) peak = Math.max(peak, Math.abs(y[i]));
    for (let b = 0; b < nb; b++) {
      let s = 0;
      for (let j = b * lb; j < (b + 1) * lb; j++) s += y[j] * y[j];
      ms[b] = s / lb;
      loud = Math.max(loud, ms[b]);
    }
    let g = 1.0;
    if (loud > 0) {
      const floor = loud * Math.pow(10, -60 / 10);
      let sum = 0, count = 0;
      for (let b = 0; b < nb; b++) if (ms[b] >= floor) { sum += ms[b]; count++; }
      const rmsDb = 10 * Math.log10(sum / count);
      if (normalize !== 'none' && rmsDb >= SILENT_DB) {
        const ceiling = Math.pow(10, PEAK_CEILING_DB / 20) / peak;
        g = normalize === 'peak' ? ceiling : Math.min(Math.pow(10, (TARGET_RMS_DB - rmsDb) / 20), ceiling);
      }
    }
    g *= Math.pow(10, (gainDb || 0) / 20);
    const gf = Math.fround(g);
    for (let i = 0; i < y.length; i++) y[i] = Math.min(1, Math.max(-1, Math.fround(y[i] * gf)));
    return y;
  }

  function makeSource(score) {
    if (score.kind === 'trajectory') return new TrajectorySource(score);
    if (score.kind === 'notes') return new NoteSource(score);
    throw new WmsError(`unknown score kind ${score.kind}`);
  }

  scope.WmsEngine = WmsEngine;
  scope.WmsNet = WmsNet;
  scope.WmsError = WmsError;
  scope.wmsEngineLib = {
    TABLE_RMS,
    BAND_EDGE,
    LIMIT_KNEE,
    TAIL_SECONDS,
    LCG_A,
    LCG_C,
    MAX_STAGES,
    GAIN_SAMPLES,
    noiseFilters,
    noiseSeed,
    decodeModel,
    checkSettings,
    simdAvailable: () => !!affineWasmModule(),
    buildScore,
    makeSource,
    applyLoudness,
    midiToHz,
    roundHalfEven,
    interp,
  };
}
wmsDefineEngine(typeof globalThis !== 'undefined' ? globalThis : this);
