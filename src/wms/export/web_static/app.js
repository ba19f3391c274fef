/*
 * The WMS web instrument page: XY pad over the training map, sliders, on-screen and computer
 * keyboard, Web MIDI, live wavetable view, tour / attractor auto-modes, recorder, presets,
 * and the scripting hook window.wms (renderOffline, midiMessage, ...).
 *
 * Sound comes from one AudioWorklet node running WmsEngine (wms_engine.js, wms_worklet.js);
 * this file only sends it messages. Plain JS, no framework, no build step, no network.
 */
(function () {
  'use strict';

  const lib = window.wmsEngineLib;
  const $ = (id) => document.getElementById(id);
  const messages = $('messages');

  function say(text, kind) {
    const p = document.createElement('p');
    p.className = 'message ' + (kind || 'info');
    p.textContent = text;
    messages.appendChild(p);
    return p;
  }

  if (!window.WMS_MODEL || !lib) {
    say('model.js or wms_engine.js did not load: keep all files of the export in one folder.', 'error');
    return;
  }
  let model;
  try {
    model = lib.decodeModel(window.WMS_MODEL);
  } catch (err) {
    say(`Cannot read the model: ${err.message}`, 'error');
    return;
  }
  const iface = model.interface;
  const names = iface.control_names;
  const ranges = iface.control_ranges;
  const nT = names.length;
  const synth = model.synth;
  const map = model.training_map || { controls: [], f0: [] };
  $('model-name').textContent = window.WMS_MODEL.name || '';
  document.title = `WMS ${window.WMS_MODEL.name || ''}`.trim();

  // ------------------------------------------------------------------ feature checks
  const AC = window.AudioContext || window.webkitAudioContext;
  const hasWorklet = !!(AC && window.AudioWorkletNode);
  if (!hasWorklet) {
    say(
      'This browser has no AudioWorklet, so the instrument cannot play here. Use a current ' +
        'Chrome, Edge, Firefox or Safari' +
        (window.isSecureContext === false ? ', and open the page from a file, from localhost or over HTTPS (AudioWorklet needs a secure context).' : '.'),
      'error');
  }
  const hasMidi = typeof navigator.requestMIDIAccess === 'function';
  if (!hasMidi) {
    $('midi-enable').disabled = true;
    $('midi-status').textContent =
      'Web MIDI is not available in this browser; play with the on-screen or computer keyboard.';
  }

  // ------------------------------------------------------------------ audio
  let ctx = null, node = null, analyser = null, volume = null, starting = null;
  const queue = [];
  let lastView = null;
  const viewWaiters = [];
  let workletUrl = null;

  /** The worklet module URL: data: on file:// (Blob URLs of an opaque origin are refused),
   *  a Blob URL elsewhere. Built from the source text of the functions this page loaded. */
  function workletURL() {
    if (workletUrl) return workletUrl;
    const src = window.wmsWorkletSource();
    if (location.protocol === 'file:') {
      workletUrl = 'data:text/javascript;charset=utf-8,' + encodeURIComponent(src);
    } else {
      workletUrl = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
    }
    return workletUrl;
  }

  function send(msg) {
    if (node) node.port.postMessage(msg);
    else queue.push(msg);
  }

  function setStatus(text) {
    $('status').textContent = text;
  }

  /** Create and start the audio graph (once); resolves when the engine runs. */
  function start() {
    if (!hasWorklet) return Promise.resolve(null); // the page already says why
    if (starting) {
      if (ctx && ctx.state === 'suspended') ctx.resume();
      return starting;
    }
    starting = (async () => {
      ctx = new AC({ latencyHint: 'interactive' });
      setStatus('starting audio');
      await ctx.audioWorklet.addModule(workletURL());
      const n = new AudioWorkletNode(ctx, 'wms-engine', {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [2],
        processorOptions: { model },
      });
      n.onprocessorerror = () => say('The audio engine stopped with an error (see the browser console).', 'error');
      n.port.onmessage = (ev) => onEngineMessage(ev.data);
      analyser = ctx.createAnalyser();
      analyser.fftSize = 2048;
      volume = ctx.createGain();
      volume.gain.value = parseFloat($('volume').value);
      n.connect(analyser);
      analyser.connect(volume);
      volume.connect(ctx.destination);
      node = n;
      send({ t: 'timbre', values: Array.from(timbre) });
      while (queue.length) node.port.postMessage(queue.shift());
      if (ctx.state !== 'running') await ctx.resume();
      setStatus(`audio on · ${ctx.sampleRate} Hz · network in ${lib.simdAvailable() ? 'WebAssembly SIMD' : 'JavaScript'}`);
      $('start-audio').textContent = 'audio on';
      $('start-audio').disabled = true;
      return ctx;
    })();
    starting.catch((err) => {
      say(`Audio could not start: ${err.message}`, 'error');
      setStatus('audio off');
    });
    return starting;
  }

  function onEngineMessage(m) {
    if (m.t === 'view') {
      lastView = m;
      drawView(m);
      while (viewWaiters.length) viewWaiters.shift()(m);
    } else if (m.t === 'rec') {
      recordChunk(m);
    } else if (m.t === 'error') {
      say(`engine: ${m.message}`, 'error');
    }
  }

  function requestView() {
    return new Promise((resolve) => {
      viewWaiters.push(resolve);
      send({ t: 'view' });
    });
  }

  $('start-audio').addEventListener('click', () => start());
  $('volume').addEventListener('input', (e) => {
    if (volume) volume.gain.value = parseFloat(e.target.value);
  });

  // ------------------------------------------------------------------ controls
  const timbre = Float64Array.from(iface.control_defaults);
  const sliders = [];
  const clampC = (i, v) => Math.min(Math.max(v, ranges[i][0]), ranges[i][1]);
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));

  function buildSliders() {
    const box = $('sliders');
    for (let i = 0; i < nT; i++) {
      const row = document.createElement('div');
      row.className = 'slider';
      const label = document.createElement('label');
      // what the control does (model.js of wms >= 0.4.0), e.g. "pc0 brighter"
      const about = model.controls ? model.controls[i] : null;
      label.textContent = names[i] + (about ? ` ${about.label}` : '') +
        (i === 0 ? ' (pad x)' : i === 1 ? ' (pad y)' : '');
      if (about) row.title = about.description;
      const input = document.createElement('input');
      input.type = 'range';
      input.min = ranges[i][0];
      input.max = ranges[i][1];
      input.step = (ranges[i][1] - ranges[i][0]) / 1000 || 0.001;
      input.value = timbre[i];
      input.id = `ctl-${i}`;
      label.htmlFor = input.id;
      const val = document.createElement('span');
      val.className = 'value';
      const learn = document.createElement('button');
      learn.type = 'button';
      learn.className = 'learn';
      learn.textContent = 'learn CC';
      learn.title = 'map the next MIDI CC you move to this control';
      learn.addEventListener('click', () => startLearn(i));
      input.addEventListener('input', () => {
        stopAuto();
        setControl(i, parseFloat(input.value));
      });
      row.append(label, input, val, learn);
      box.appendChild(row);
      sliders.push({ input, val, learn });
    }
  }

  let padDirty = true; // redrawn once per animation frame

  /** Set control i (clamped to its training range) and tell the engine (unless quiet). */
  function setControl(i, v, quiet) {
    if (!(i >= 0 && i < nT) || !Number.isFinite(v)) throw new Error(`bad control ${i} = ${v}; controls: ${names.join(', ')}`);
    timbre[i] = clampC(i, v);
    sliders[i].input.value = timbre[i];
    sliders[i].val.textContent = fmt(timbre[i]);
    if (!quiet) send({ t: 'timbre', values: Array.from(timbre) });
    padDirty = true;
  }

  function setAll(values) {
    for (let i = 0; i < nT; i++) setControl(i, values[i], true);
    send({ t: 'timbre', values: Array.from(timbre) });
  }

  // ------------------------------------------------------------------ pad
  const pad = $('pad');
  const padCtx = pad.getContext('2d');
  const hasY = nT >= 2;
  const f0s = map.f0 || [];
  let f0lo = Infinity, f0hi = -Infinity;
  for (const f of f0s) {
    if (f > 0) {
      f0lo = Math.min(f0lo, f);
      f0hi = Math.max(f0hi, f);
    }
  }
  if (!(f0lo < f0hi)) {
    f0lo = iface.pitch.f0_range[0];
    f0hi = iface.pitch.f0_range[1] * 1.0001;
  }
  const pitchColour = (f) => {
    const u = Math.min(Math.max(Math.log(f / f0lo) / Math.log(f0hi / f0lo), 0), 1);
    return `hsl(${(240 - 240 * u).toFixed(0)}, 85%, 58%)`;
  };
  $('f0-lo').textContent = f0lo.toFixed(0);
  $('f0-hi').textContent = f0hi.toFixed(0);
  (function drawBar() {
    const c = $('f0-bar'), g = c.getContext('2d');
    for (let x = 0; x < c.width; x++) {
      g.fillStyle = pitchColour(f0lo * Math.pow(f0hi / f0lo, x / (c.width - 1)));
      g.fillRect(x, 0, 1, c.height);
    }
  })();
  $('pad-x').textContent = `${names[0]} →`;
  $('pad-y').textContent = hasY ? `${names[1]} →` : '(one control: the pad moves along x only)';

  const toPadX = (v) => ((v - ranges[0][0]) / (ranges[0][1] - ranges[0][0])) * pad.width;
  const toPadY = (v) => (hasY ? (1 - (v - ranges[1][0]) / (ranges[1][1] - ranges[1][0])) * pad.height : pad.height / 2);

  let mapLayer = null; // the training points, drawn once
  function drawMapLayer() {
    mapLayer = document.createElement('canvas');
    mapLayer.width = pad.width;
    mapLayer.height = pad.height;
    const g = mapLayer.getContext('2d');
    g.fillStyle = '#14161c';
    g.fillRect(0, 0, pad.width, pad.height);
    g.strokeStyle = '#262a33';
    g.lineWidth = 1;
    for (let k = 1; k < 4; k++) {
      g.beginPath();
      g.moveTo((k * pad.width) / 4, 0);
      g.lineTo((k * pad.width) / 4, pad.height);
      g.moveTo(0, (k * pad.height) / 4);
      g.lineTo(pad.width, (k * pad.height) / 4);
      g.stroke();
    }
    const pts = map.controls || [];
    g.globalAlpha = 0.75;
    for (let i = 0; i < pts.length; i++) {
      const x = toPadX(pts[i][0]), y = hasY ? toPadY(pts[i][1]) : pad.height / 2 + ((i * 7919) % 97) - 48;
      if (x < 0 || x > pad.width || y < 0 || y > pad.height) continue;
      g.fillStyle = pitchColour(f0s[i] || f0lo);
      g.fillRect(x - 1.5, y - 1.5, 3, 3);
    }
    g.globalAlpha = 1;
  }

  function drawPad() {
    padDirty = false;
    if (!mapLayer) drawMapLayer();
    const g = padCtx;
    g.drawImage(mapLayer, 0, 0);
    // presets
    g.font = '11px sans-serif';
    for (const p of presets) {
      const x = toPadX(p.values[0]), y = toPadY(p.values[1] !== undefined ? p.values[1] : 0);
      g.strokeStyle = '#e8e8e8';
      g.strokeRect(x - 4, y - 4, 8, 8);
      g.fillStyle = '#e8e8e8';
      g.fillText(p.name, x + 7, y + 4);
    }
    const x = toPadX(timbre[0]), y = toPadY(hasY ? timbre[1] : 0);
    g.strokeStyle = '#ffffff';
    g.lineWidth = 2;
    g.beginPath();
    g.arc(x, y, 9, 0, 2 * Math.PI);
    g.stroke();
    g.beginPath();
    g.moveTo(x - 14, y);
    g.lineTo(x + 14, y);
    g.moveTo(x, y - 14);
    g.lineTo(x, y + 14);
    g.stroke();
    g.lineWidth = 1;
  }

  function padValue(ev) {
    const r = pad.getBoundingClientRect();
    const u = Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 1);
    const w = Math.min(Math.max((ev.clientY - r.top) / r.height, 0), 1);
    return [ranges[0][0] + u * (ranges[0][1] - ranges[0][0]), hasY ? ranges[1][0] + (1 - w) * (ranges[1][1] - ranges[1][0]) : 0];
  }

  let padDown = false;
  function padMove(ev) {
    const [a, b] = padValue(ev);
    setControl(0, a, true);
    if (hasY) setControl(1, b, true);
    send({ t: 'timbre', values: Array.from(timbre) });
  }
  pad.addEventListener('pointerdown', (ev) => {
    start();
    stopAuto();
    padDown = true;
    pad.setPointerCapture(ev.pointerId);
    padMove(ev);
    ev.preventDefault();
  });
  pad.addEventListener('pointermove', (ev) => {
    if (padDown) padMove(ev);
  });
  const padUp = () => {
    padDown = false;
  };
  pad.addEventListener('pointerup', padUp);
  pad.addEventListener('pointercancel', padUp);

  // ------------------------------------------------------------------ notes
  const held = new Map(); // note -> count of sources holding it (keys, mouse, MIDI)
  let pedal = false;
  const sustained = new Set();

  function noteOn(note, velocity) {
    if (!(note >= 0 && note <= 127)) return;
    const vel = velocity === undefined ? parseInt($('velocity').value, 10) / 127 : velocity;
    const f0 = lib.midiToHz(note);
    if (!(f0 < 0.5 * (ctx ? ctx.sampleRate : synth.sample_rate))) return;
    start();
    sustained.delete(note);
    held.set(note, (held.get(note) || 0) + 1);
    send({ t: 'on', note, velocity: Math.min(Math.max(vel, 0), 1) });
    markKey(note, true);
  }

  function noteOff(note) {
    const c = held.get(note) || 0;
    if (c > 1) {
      held.set(note, c - 1);
      return;
    }
    held.delete(note);
    markKey(note, false);
    if (pedal) {
      sustained.add(note);
      return;
    }
    send({ t: 'off', note });
  }

  function setPedal(down) {
    pedal = down;
    if (!down) {
      for (const n of sustained) send({ t: 'off', note: n });
      sustained.clear();
    }
  }

  function allOff() {
    held.clear();
    sustained.clear();
    for (const k of keyEls.values()) k.classList.remove('down');
    send({ t: 'alloff' });
  }

  function setBend(unit) {
    send({ t: 'bend', semitones: unit * synth.pitch_bend_range });
  }

  // ------------------------------------------------------------------ keyboard
  let octave = 4; // the lower row starts at C4 (MIDI 60)
  const LOWER = ['KeyZ', 'KeyS', 'KeyX', 'KeyD', 'KeyC', 'KeyV', 'KeyG', 'KeyB', 'KeyH', 'KeyN', 'KeyJ', 'KeyM', 'Comma', 'KeyL', 'Period', 'Semicolon', 'Slash'];
  const UPPER = ['KeyQ', 'Digit2', 'KeyW', 'Digit3', 'KeyE', 'KeyR', 'Digit5', 'KeyT', 'Digit6', 'KeyY', 'Digit7', 'KeyU', 'KeyI', 'Digit9', 'KeyO', 'Digit0', 'KeyP'];
  const codeOffset = new Map();
  LOWER.forEach((c, i) => codeOffset.set(c, i));
  UPPER.forEach((c, i) => codeOffset.set(c, 12 + i));
  const keyNotes = new Map(); // code -> note it started (octave changes while held)
  const keyEls = new Map();

  function showOctave() {
    $('octave').textContent = `C${octave}–B${octave + 1}`;
    buildKeyboard();
  }

  function typing(ev) {
    const t = ev.target;
    return !!t && ((t.tagName === 'INPUT' && t.type === 'text') || t.isContentEditable);
  }

  document.addEventListener('keydown', (ev) => {
    if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.code === 'Minus' || ev.code === 'Equal') {
      if (!ev.repeat) {
        octave = Math.min(Math.max(octave + (ev.code === 'Equal' ? 1 : -1), 0), 8);
        showOctave();
      }
      ev.preventDefault();
      return;
    }
    if (!codeOffset.has(ev.code)) return;
    ev.preventDefault();
    if (ev.repeat || keyNotes.has(ev.code)) return;
    const note = 12 * (octave + 1) + codeOffset.get(ev.code);
    keyNotes.set(ev.code, note);
    noteOn(note);
  });
  document.addEventListener('keyup', (ev) => {
    if (!keyNotes.has(ev.code)) return;
    const note = keyNotes.get(ev.code);
    keyNotes.delete(ev.code);
    noteOff(note);
  });
  window.addEventListener('blur', () => {
    for (const note of keyNotes.values()) noteOff(note);
    keyNotes.clear();
  });
  $('oct-down').addEventListener('click', () => {
    octave = Math.max(octave - 1, 0);
    showOctave();
  });
  $('oct-up').addEventListener('click', () => {
    octave = Math.min(octave + 1, 8);
    showOctave();
  });
  $('bend').addEventListener('input', (e) => setBend(parseFloat(e.target.value)));
  $('bend').addEventListener('change', (e) => {
    e.target.value = 0; // springs back like a wheel
    setBend(0);
  });

  function markKey(note, down) {
    const el = keyEls.get(note);
    if (el) el.classList.toggle('down', down);
  }

  function buildKeyboard() {
    const box = $('keyboard');
    box.textContent = '';
    keyEls.clear();
    const first = 12 * (octave + 1);
    const black = [1, 3, 6, 8, 10];
    let white = 0;
    for (let k = 0; k <= 24; k++) {
      const note = first + k;
      const isBlack = black.includes(k % 12);
      const el = document.createElement('div');
      el.className = isBlack ? 'key black' : 'key white';
      if (isBlack) el.style.left = `calc(${white} * var(--white) - var(--black) / 2)`;
      else {
        el.style.left = `calc(${white} * var(--white))`;
        white += 1;
      }
      if (k % 12 === 0) el.textContent = `C${octave + k / 12}`;
      el.dataset.note = note;
      let down = false;
      const on = (ev) => {
        ev.preventDefault();
        if (down) return;
        down = true;
        // touch captures the pointer implicitly: release it so sliding plays the next key
        if (ev.pointerId !== undefined && el.hasPointerCapture(ev.pointerId)) el.releasePointerCapture(ev.pointerId);
        noteOn(note);
      };
      const off = () => {
        if (!down) return;
        down = false;
        noteOff(note);
      };
      el.addEventListener('pointerdown', on);
      el.addEventListener('pointerenter', (ev) => {
        if (ev.buttons & 1) on(ev);
      });
      el.addEventListener('pointerup', off);
      el.addEventListener('pointerleave', off);
      el.addEventListener('pointercancel', off);
      box.appendChild(el);
      keyEls.set(note, el);
      if (held.has(note)) el.classList.add('down');
    }
    box.style.width = `calc(${white} * var(--white))`;
  }

  // ------------------------------------------------------------------ MIDI
  const ccMap = new Map(); // CC number -> control index
  for (const [cc, name] of Object.entries(synth.midi_cc || {})) {
    const i = names.indexOf(name);
    const num = parseInt(cc, 10);
    if (i >= 0 && num >= 0 && num <= 127) ccMap.set(num, i);
  }
  let learning = -1;

  function showCcMap() {
    const parts = [];
    for (const [cc, i] of [...ccMap.entries()].sort((a, b) => a[0] - b[0])) parts.push(`CC ${cc} → ${names[i]}`);
    $('cc-map').textContent = parts.length ? parts.join(' · ') : 'no CC mapped: press "learn CC" beside a control, then move a knob';
    sliders.forEach((s, i) => s.learn.classList.toggle('on', i === learning));
  }

  function startLearn(i) {
    learning = learning === i ? -1 : i;
    showCcMap();
  }

  /**
   * One MIDI message (bytes, any channel): note on/off (velocity / 127), pitch bend
   * (+-synth.pitch_bend_range), CC 64 sustain, CC 120/123 all off, mapped CCs -> controls
   * (0..127 across the training range). Web MIDI input calls this too.
   */
  function midiMessage(data) {
    const d = Array.from(data);
    const st = d[0] & 0xf0;
    if (st === 0x90 && d[2] > 0) noteOn(d[1], d[2] / 127);
    else if (st === 0x80 || (st === 0x90 && d[2] === 0)) noteOff(d[1]);
    else if (st === 0xe0) {
      const v = ((d[2] << 7) | d[1]) - 8192;
      setBend(v / (v < 0 ? 8192 : 8191));
    } else if (st === 0xb0) {
      const cc = d[1], val = d[2];
      if (cc === 64) setPedal(val >= 64);
      else if (cc === 120 || cc === 123) allOff();
      else if (learning >= 0) {
        for (const [k, i] of ccMap) if (i === learning) ccMap.delete(k);
        ccMap.set(cc, learning);
        learning = -1;
        showCcMap();
      } else if (ccMap.has(cc)) {
        const i = ccMap.get(cc);
        stopAuto();
        setControl(i, ranges[i][0] + (val / 127) * (ranges[i][1] - ranges[i][0]));
      }
    }
  }

  $('midi-enable').addEventListener('click', async () => {
    start();
    try {
      const access = await navigator.requestMIDIAccess({ sysex: false });
      const attach = () => {
        const ins = [];
        for (const input of access.inputs.values()) {
          input.onmidimessage = (ev) => midiMessage(ev.data);
          ins.push(input.name);
        }
        $('midi-status').textContent = ins.length ? `inputs: ${ins.join(', ')}` : 'MIDI on, no input connected yet';
      };
      access.onstatechange = attach;
      attach();
      $('midi-enable').disabled = true;
    } catch (err) {
      $('midi-status').textContent = `MIDI access was refused (${err.message || err}); the keyboards still work.`;
    }
  });

  // ------------------------------------------------------------------ live view
  const wave = $('wave'), wg = wave.getContext('2d');
  const harm = $('harmonics'), hg = harm.getContext('2d');
  const meter = $('meter'), mg = meter.getContext('2d');

  function drawView(v) {
    wg.fillStyle = '#14161c';
    wg.fillRect(0, 0, wave.width, wave.height);
    hg.fillStyle = '#14161c';
    hg.fillRect(0, 0, harm.width, harm.height);
    if (v.table) {
      let peak = 1e-9;
      for (let j = 0; j < v.table.length; j++) peak = Math.max(peak, Math.abs(v.table[j]));
      wg.strokeStyle = v.playing ? '#7fd1ff' : '#4a5a66';
      wg.lineWidth = 1.5;
      wg.beginPath();
      const n = v.table.length, h = wave.height / 2;
      for (let x = 0; x < wave.width; x++) {
        const y = h - (v.table[Math.floor((x / wave.width) * n)] / peak) * (h - 4);
        if (x === 0) wg.moveTo(x, y);
        else wg.lineTo(x, y);
      }
      wg.stroke();
      let amax = 1e-12;
      for (const a of v.amps) amax = Math.max(amax, a);
      const bw = harm.width / v.amps.length;
      hg.fillStyle = v.playing ? '#ffb347' : '#665a4a';
      for (let k = 0; k < v.amps.length; k++) {
        const db = 20 * Math.log10(v.amps[k] / amax + 1e-12);
        const hgt = Math.max(0, (1 + db / 60) * harm.height);
        hg.fillRect(k * bw + 1, harm.height - hgt, bw - 2, hgt);
      }
      $('view-info').textContent =
        `${v.playing ? 'playing' : 'last played'} · ${v.voices} voice${v.voices === 1 ? '' : 's'} · ` +
        `${v.amps.length} harmonics (bars: 60 dB range)` +
        (v.noiseBands ? ` + ${v.noiseBands} noise bands` : '') + (v.limited ? ` · ${v.limited} samples soft-limited` : '');
    } else {
      $('view-info').textContent = 'play a note to see its wavetable';
    }
    mg.fillStyle = '#14161c';
    mg.fillRect(0, 0, meter.width, meter.height);
    const db = 20 * Math.log10(v.peak + 1e-9);
    const w = Math.max(0, Math.min(1, (db + 60) / 60)) * meter.width;
    mg.fillStyle = db > -1 ? '#ff5a5a' : '#5ad17f';
    mg.fillRect(0, 0, w, meter.height);
  }

  // ------------------------------------------------------------------ auto modes
  let auto = 'off', autoT = 0, lastFrame = 0;
  let tour = null, lorenz = null;

  function setAutoButtons() {
    for (const m of ['off', 'tour', 'attractor']) $(`auto-${m}`).classList.toggle('on', auto === m);
  }

  function stopAuto() {
    if (auto !== 'off') {
      auto = 'off';
      setAutoButtons();
    }
  }

  /** Farthest-point samples of the training map, in nearest-neighbour order (as wms render --path tour). */
  function tourStops(k) {
    const pts = map.controls || [];
    if (!pts.length) return null;
    const m = pts.length;
    const sd = new Float64Array(nT);
    for (let c = 0; c < nT; c++) {
      let mu = 0, s2 = 0;
      for (const p of pts) mu += p[c];
      mu /= m;
      for (const p of pts) s2 += (p[c] - mu) ** 2;
      sd[c] = Math.sqrt(s2 / m) + 1e-12;
    }
    const dist = (a, b) => {
      let s = 0;
      for (let c = 0; c < nT; c++) s += ((a[c] - b[c]) / sd[c]) ** 2;
      return Math.sqrt(s);
    };
    const chosen = [0];
    const d = pts.map((p) => dist(p, pts[0]));
    for (let n = 1; n < Math.min(k, m); n++) {
      let j = 0;
      for (let i = 1; i < m; i++) if (d[i] > d[j]) j = i;
      chosen.push(j);
      for (let i = 0; i < m; i++) d[i] = Math.min(d[i], dist(pts[i], pts[j]));
    }
    const order = [chosen.shift()];
    while (chosen.length) {
      const last = pts[order[order.length - 1]];
      let best = 0;
      for (let i = 1; i < chosen.length; i++) if (dist(pts[chosen[i]], last) < dist(pts[chosen[best]], last)) best = i;
      order.push(chosen.splice(best, 1)[0]);
    }
    return order.map((i) => pts[i].map((v, c) => clampC(c, v)));
  }

  function lorenzStep(s, dt) {
    const f = (p) => [10 * (p[1] - p[0]), p[0] * (28 - p[2]) - p[1], p[0] * p[1] - (8 / 3) * p[2]];
    const add = (p, k, h) => [p[0] + h * k[0], p[1] + h * k[1], p[2] + h * k[2]];
    const k1 = f(s), k2 = f(add(s, k1, dt / 2)), k3 = f(add(s, k2, dt / 2)), k4 = f(add(s, k3, dt));
    return [0, 1, 2].map((i) => s[i] + (dt / 6) * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]));
  }

  function setAuto(mode) {
    start();
    auto = mode;
    autoT = 0;
    if (mode === 'tour') {
      tour = tourStops(Math.max(2, Math.min(12, (map.controls || []).length)));
      if (!tour) {
        say('This model holds no training map to tour.', 'error');
        auto = 'off';
      }
    } else if (mode === 'attractor') {
      lorenz = [1.1, 0.9, 20.5];
      for (let i = 0; i < 2000; i++) lorenz = lorenzStep(lorenz, 0.005);
    }
    setAutoButtons();
  }
  $('auto-off').addEventListener('click', () => setAuto('off'));
  $('auto-tour').addEventListener('click', () => setAuto('tour'));
  $('auto-attractor').addEventListener('click', () => setAuto('attractor'));

  function autoFrame(dt) {
    const speed = parseFloat($('auto-speed').value);
    autoT += dt * speed;
    if (auto === 'tour') {
      const leg = 2.0; // seconds per stop at speed 1: hold 40 %, smoothstep 60 %
      const n = tour.length;
      const pos = (autoT / leg) % n;
      const i = Math.floor(pos), j = (i + 1) % n;
      const u = Math.min(Math.max((pos - i - 0.4) / 0.6, 0), 1);
      const w = u * u * (3 - 2 * u);
      setAll(tour[i].map((v, c) => v * (1 - w) + tour[j][c] * w));
    } else if (auto === 'attractor') {
      let steps = Math.max(1, Math.ceil((0.5 * dt * speed) / 0.005));
      const h = (0.5 * dt * speed) / steps;
      while (steps--) lorenz = lorenzStep(lorenz, h);
      const unit = [(lorenz[0] + 22) / 44, (lorenz[1] + 22) / 44, (lorenz[2] - 2) / 48];
      const v = Array.from(timbre);
      for (let c = 0; c < Math.min(3, nT); c++) v[c] = ranges[c][0] + Math.min(Math.max(unit[c], 0), 1) * (ranges[c][1] - ranges[c][0]);
      setAll(v);
    }
  }

  let lastViewAsk = 0;
  function frame(now) {
    const dt = lastFrame ? Math.min((now - lastFrame) / 1000, 0.1) : 0;
    lastFrame = now;
    if (auto !== 'off' && dt > 0) autoFrame(dt);
    if (padDirty) drawPad();
    if (node && now - lastViewAsk > 50) {
      lastViewAsk = now;
      send({ t: 'view' });
    }
    requestAnimationFrame(frame);
  }

  // ------------------------------------------------------------------ recorder
  let rec = null; // {chunks, n, lost, timer}

  function recordChunk(m) {
    if (!rec) return;
    if (m.data.length) {
      rec.chunks.push(m.data);
      rec.n += m.data.length;
    }
    rec.lost = m.lost;
    $('rec-info').textContent = `${(rec.n / ctx.sampleRate).toFixed(1)} s` + (rec.lost ? ` (${rec.lost} samples lost: the tab was in the background too long)` : '');
    if (rec.stopping) finishRecording();
  }

  /** 16-bit PCM mono WAV of float samples. */
  function wavBlob(chunks, n, sr) {
    const buf = new ArrayBuffer(44 + 2 * n);
    const v = new DataView(buf);
    const str = (o, s) => {
      for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i));
    };
    str(0, 'RIFF');
    v.setUint32(4, 36 + 2 * n, true);
    str(8, 'WAVE');
    str(12, 'fmt ');
    v.setUint32(16, 16, true);
    v.setUint16(20, 1, true);
    v.setUint16(22, 1, true);
    v.setUint32(24, sr, true);
    v.setUint32(28, 2 * sr, true);
    v.setUint16(32, 2, true);
    v.setUint16(34, 16, true);
    str(36, 'data');
    v.setUint32(40, 2 * n, true);
    let o = 44;
    for (const c of chunks) {
      for (let i = 0; i < c.length; i++, o += 2) {
        const x = Math.max(-1, Math.min(1, c[i]));
        v.setInt16(o, Math.round(x < 0 ? x * 32768 : x * 32767), true);
      }
    }
    return new Blob([buf], { type: 'audio/wav' });
  }

  function finishRecording() {
    const r = rec;
    rec = null;
    clearInterval(r.timer);
    const blob = wavBlob(r.chunks, r.n, ctx.sampleRate);
    const url = URL.createObjectURL(blob);
    const stamp = new Date().toISOString().replace(/[:T]/g, '-').slice(0, 19);
    const a = document.createElement('a');
    a.href = url;
    a.download = `wms-${stamp}.wav`;
    a.textContent = `download ${a.download} (${(r.n / ctx.sampleRate).toFixed(1)} s)`;
    $('rec-link').textContent = '';
    $('rec-link').appendChild(a);
    lastRecording = { samples: concat(r.chunks, r.n), sampleRate: ctx.sampleRate, lost: r.lost, url };
    $('rec').textContent = 'record';
    $('rec').classList.remove('on');
  }

  function concat(chunks, n) {
    const out = new Float32Array(n);
    let o = 0;
    for (const c of chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }

  let lastRecording = null;
  async function toggleRecord() {
    await start();
    if (rec) {
      rec.stopping = true;
      send({ t: 'rec', on: false });
      send({ t: 'drain' });
      return;
    }
    rec = { chunks: [], n: 0, lost: 0, stopping: false };
    rec.timer = setInterval(() => send({ t: 'drain' }), 250);
    send({ t: 'rec', on: true });
    $('rec').textContent = 'stop';
    $('rec').classList.add('on');
    $('rec-info').textContent = '0.0 s';
  }
  $('rec').addEventListener('click', toggleRecord);

  // ------------------------------------------------------------------ presets
  const storeKey = `wms-presets:${window.WMS_MODEL.name || 'model'}:${names.join(',')}`;
  let presets = [];
  try {
    presets = JSON.parse(localStorage.getItem(storeKey) || '[]').filter((p) => p && Array.isArray(p.values) && p.values.length === nT);
  } catch (err) {
    presets = []; // storage unavailable (private mode, some file:// setups): presets last for this visit
  }

  function savePresets() {
    try {
      localStorage.setItem(storeKey, JSON.stringify(presets));
    } catch (err) {
      /* not persistent here; export JSON keeps them */
    }
  }

  function showPresets() {
    const ul = $('preset-list');
    ul.textContent = '';
    presets.forEach((p, k) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = p.name;
      b.title = names.map((n, i) => `${n} = ${fmt(p.values[i])}`).join(', ');
      b.addEventListener('click', () => {
        stopAuto();
        setAll(p.values);
      });
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'del';
      del.textContent = '×';
      del.title = 'delete';
      del.addEventListener('click', () => {
        presets.splice(k, 1);
        savePresets();
        showPresets();
        drawPad();
      });
      li.append(b, del);
      ul.appendChild(li);
    });
    drawPad();
  }

  $('preset-save').addEventListener('click', () => {
    const name = $('preset-name').value.trim() || `point ${presets.length + 1}`;
    presets.push({ name, values: Array.from(timbre) });
    $('preset-name').value = '';
    savePresets();
    showPresets();
  });

  function download(name, text, type) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([text], { type }));
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  function presetsJson() {
    return {
      format: 'wms-presets',
      version: 1,
      model: window.WMS_MODEL.name || '',
      control_names: names,
      presets: presets.map((p) => ({ name: p.name, controls: Object.fromEntries(names.map((n, i) => [n, p.values[i]])) })),
    };
  }

  $('preset-export').addEventListener('click', () => {
    download('wms-presets.json', JSON.stringify(presetsJson(), null, 2) + '\n', 'application/json');
  });

  /** Presets from exported JSON; controls missing from a preset take their defaults. */
  function importPresets(data) {
    if (!data || data.format !== 'wms-presets' || !Array.isArray(data.presets)) {
      throw new Error('not a WMS presets file (format "wms-presets")');
    }
    let added = 0;
    for (const p of data.presets) {
      const c = (p && p.controls) || {};
      const unknown = Object.keys(c).filter((k) => !names.includes(k));
      if (unknown.length) throw new Error(`preset ${JSON.stringify(p.name)} names unknown controls ${unknown.join(', ')} (this model has ${names.join(', ')})`);
      const values = names.map((n, i) => (Number.isFinite(c[n]) ? clampC(i, c[n]) : iface.control_defaults[i]));
      presets.push({ name: String(p.name || `point ${presets.length + 1}`).slice(0, 40), values });
      added += 1;
    }
    savePresets();
    showPresets();
    return added;
  }

  $('preset-import').addEventListener('change', (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      try {
        const n = importPresets(JSON.parse(reader.result));
        say(`${file.name}: ${n} preset${n === 1 ? '' : 's'} imported`, 'info');
      } catch (err) {
        say(`${file.name}: ${err.message}`, 'error');
      }
      ev.target.value = '';
    };
    reader.readAsText(file);
  });

  // ------------------------------------------------------------------ offline rendering
  /**
   * Render through the same engine in an OfflineAudioContext (the live AudioWorklet code).
   * opts: {f0, seconds, sampleRate, controls, notes, synth, simd, normalize, gain} (see
   * buildScore in wms_engine.js; normalize 'loudness' (default) | 'peak' | 'none' and gain in
   * dB are wms render's loudness policy); resolves to the samples (Float32Array, mono).
   */
  async function renderOffline(opts) {
    const o = opts || {};
    const sr = o.sampleRate === undefined ? synth.sample_rate : o.sampleRate;
    const score = lib.buildScore(model, o, sr);
    lib.checkSettings(model, { sampleRate: sr, synth: o.synth }); // reject here, with the message
    if (!window.OfflineAudioContext || !window.AudioWorkletNode) throw new Error('no OfflineAudioContext with AudioWorklet in this browser');
    const oc = new OfflineAudioContext(1, score.total, sr);
    await oc.audioWorklet.addModule(workletURL());
    const n = new AudioWorkletNode(oc, 'wms-engine', {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { model, score, synth: o.synth || null, simd: o.simd },
    });
    let failed = false;
    n.onprocessorerror = () => {
      failed = true;
    };
    n.connect(oc.destination);
    const buf = await oc.startRendering();
    if (failed) throw new Error('the engine failed inside the AudioWorklet (see the console)');
    return lib.applyLoudness(buf.getChannelData(0), sr, o.normalize || 'loudness', o.gain || 0);
  }

  /** The same render with the engine called on this thread (no AudioWorklet): comparisons. */
  function renderDirect(opts) {
    const o = opts || {};
    const sr = o.sampleRate === undefined ? synth.sample_rate : o.sampleRate;
    const score = lib.buildScore(model, o, sr);
    const e = new window.WmsEngine(model, { sampleRate: sr, synth: o.synth, maxBlock: 128, simd: o.simd });
    e.source = lib.makeSource(score);
    const out = new Float32Array(score.total);
    const blk = new Float32Array(128);
    for (let s = 0; s < score.total; s += 128) {
      const n = Math.min(128, score.total - s);
      e.process(blk, n);
      out.set(n === 128 ? blk : blk.subarray(0, n), s);
    }
    return lib.applyLoudness(out, sr, o.normalize || 'loudness', o.gain || 0);
  }

  // ------------------------------------------------------------------ scripting hook
  window.wms = {
    model: { name: window.WMS_MODEL.name, controls: names.slice(), ranges, defaults: iface.control_defaults.slice(), synth: Object.assign({}, synth) },
    start,
    renderOffline,
    renderDirect,
    midiMessage,
    noteOn: (note, velocity) => noteOn(note, velocity),
    noteOff: (note) => noteOff(note),
    allNotesOff: allOff,
    setControl: (name, v) => {
      const i = typeof name === 'number' ? name : names.indexOf(name);
      if (i < 0) throw new Error(`unknown control ${JSON.stringify(name)}; controls: ${names.join(', ')}`);
      setControl(i, v);
    },
    controls: () => Object.fromEntries(names.map((n, i) => [n, timbre[i]])),
    setAuto,
    requestView,
    view: () => lastView,
    /** RMS of the output over the analyser's last 2048 samples (0 before audio starts). */
    level: () => {
      if (!analyser) return 0;
      const d = new Float32Array(analyser.fftSize);
      analyser.getFloatTimeDomainData(d);
      let s = 0;
      for (let i = 0; i < d.length; i++) s += d[i] * d[i];
      return Math.sqrt(s / d.length);
    },
    toggleRecord,
    lastRecording: () => lastRecording,
    presets: { list: () => presets.map((p) => ({ name: p.name, values: p.values.slice() })), toJSON: presetsJson, import: importPresets },
    audioContext: () => ctx,
    /** Whether the network runs on WebAssembly SIMD here (else plain JS). */
    simd: () => lib.simdAvailable(),
  };

  buildSliders();
  for (let i = 0; i < nT; i++) sliders[i].val.textContent = fmt(timbre[i]);
  showOctave();
  showCcMap();
  showPresets();
  drawPad();
  drawView({ table: null, peak: 0 });
  requestAnimationFrame(frame);
  // user gestures start audio (browsers' autoplay rule); with autoplay allowed, start now
  document.addEventListener('pointerdown', () => start(), { once: true });
  document.addEventListener('keydown', () => start(), { once: true });
})();
