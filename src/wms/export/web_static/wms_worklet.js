/*
 * The AudioWorklet processor of the WMS web instrument: a WmsEngine rendering into the
 * node's output, live (driven by port messages) or offline (driven by a score, for
 * window.wms.renderOffline in an OfflineAudioContext). Same class, same engine, both ways.
 *
 * A worklet module cannot be loaded from file:// (the page's origin is opaque) and must not
 * be fetched, so the module text is built from the source of two functions the page already
 * has: wmsWorkletSource() = wmsDefineEngine + wmsDefineProcessor, loaded through a data: URL
 * (file://) or a Blob URL (http/https).
 *
 * process() allocates nothing: the recorder ring and meters are preallocated; copies for the
 * page (table view, recorded samples) are made in the port's message handler instead.
 */
function wmsDefineProcessor(scope) {
  'use strict';

  /** Seconds the recorder ring holds between two drains by the page. */
  const RING_SECONDS = 20;

  class WmsProcessor extends AudioWorkletProcessor {
    constructor(options) {
      super();
      const o = options.processorOptions || {};
      const lib = scope.wmsEngineLib;
      this.engine = new scope.WmsEngine(o.model, {
        sampleRate: scope.sampleRate,
        maxBlock: 4096,
        synth: o.synth || undefined,
        simd: o.simd,
      });
      if (o.score) this.engine.source = lib.makeSource(o.score);
      const e = this.engine;
      this.table = new Float32Array(e.harmonic.S);
      this.amps = new Float32Array(e.harmonic.H);
      this.lastVoice = -1;
      this.ring = new Float32Array(Math.round(RING_SECONDS * scope.sampleRate));
      this.ringWrite = 0;
      this.ringRead = 0;
      this.recording = false;
      this.lost = 0;
      this.peak = 0.0;
      this.port.onmessage = (ev) => this.onMessage(ev.data);
    }

    onMessage(m) {
      const e = this.engine;
      try {
        switch (m.t) {
          case 'on':
            e.noteOn(scope.wmsEngineLib.midiToHz(m.note), m.velocity, m.note, 0);
            break;
          case 'off':
            e.noteOff(m.note, 0);
            break;
          case 'alloff':
            e.allNotesOff(0);
            break;
          case 'timbre':
            e.setTimbre(m.values);
            break;
          case 'control':
            e.setControl(m.index, m.value);
            break;
          case 'bend':
            e.setPitchBend(m.semitones);
            break;
          case 'view':
            this.postView();
            break;
          case 'rec':
            this.recording = !!m.on;
            if (this.recording) {
              this.ringWrite = this.ringRead = 0;
              this.lost = 0;
            }
            break;
          case 'drain':
            this.drain();
            break;
          default:
            throw new Error(`unknown message ${m.t}`);
        }
      } catch (err) {
        this.port.postMessage({ t: 'error', message: String(err && err.message ? err.message : err) });
      }
    }

    postView() {
      const e = this.engine;
      const v = e.newestVoice();
      if (v >= 0) this.lastVoice = v;
      const w = this.lastVoice;
      if (w >= 0) {
        e.harmonic.copyTable(w, this.table);
        e.harmonic.copyAmplitudes(w, this.amps);
      }
      this.port.postMessage({
        t: 'view',
        playing: v >= 0,
        voices: e.activeVoices,
        table: w >= 0 ? this.table.slice() : null,
        amps: w >= 0 ? this.amps.slice() : null,
        timbre: Array.from(e.timbre),
        peak: this.peak,
        limited: e.samplesLimited,
        simd: e.net.simd,
        noiseBands: e.noise ? e.noise.B : 0,
      });
    }

    drain() {
      const n = this.ringWrite - this.ringRead;
      const out = new Float32Array(n);
      const size = this.ring.length;
      for (let i = 0; i < n; i++) out[i] = this.ring[(this.ringRead + i) % size];
      this.ringRead = this.ringWrite;
      this.port.postMessage({ t: 'rec', data: out, lost: this.lost }, [out.buffer]);
    }

    process(inputs, outputs) {
      const out = outputs[0];
      if (!out || out.length === 0) return true;
      const ch = out[0];
      const n = ch.length;
      this.engine.process(ch, n);
      for (let c = 1; c < out.length; c++) out[c].set(ch);
      let p = this.peak * 0.97;
      for (let i = 0; i < n; i++) {
        const a = Math.abs(ch[i]);
        if (a > p) p = a;
      }
      this.peak = p;
      if (this.recording) {
        const size = this.ring.length;
        for (let i = 0; i < n; i++) {
          if (this.ringWrite - this.ringRead >= size) {
            this.lost += 1; // the page did not drain in time: drop the newest
            continue;
          }
          this.ring[this.ringWrite % size] = ch[i];
          this.ringWrite += 1;
        }
      }
      return true;
    }
  }

  scope.registerProcessor('wms-engine', WmsProcessor);
}

/** The AudioWorklet module's source text: the engine and the processor. */
function wmsWorkletSource() {
  return (
    '(' + wmsDefineEngine.toString() + ')(globalThis);\n' +
    '(' + wmsDefineProcessor.toString() + ')(globalThis);\n'
  );
}
