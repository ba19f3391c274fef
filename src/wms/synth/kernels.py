"""Numba kernels of the streaming engine (per control step and per sample).

Everything here works in place on preallocated arrays, so a block allocates nothing.
Voices are addressed through ``idx[:nv]`` (slot numbers of the voices playing this control
step); per-step work arrays (tables, amplitudes, model rows) are indexed by the position
``q`` in that list.

Crossfade (see docs/SYNTH.md): during control step ``k`` of ``L`` samples, sample ``j``
(``0 <= j < L``) of a voice is

    a   = (j + 1) / L
    mix = (1 - a) * T_prev(phase) + a * T_next(phase)
    out = mix * c(a) * level(a) * envelope * velocity

Both tables are read at the *same* phase, so ``mix`` is exactly the waveform whose harmonic
amplitudes are the linear interpolation of the two tables' — no phase cancellation, no
discontinuity (at ``j = L - 1`` the voice plays ``T_next`` alone, which is ``T_prev`` of the
next step). ``c(a)`` corrects the RMS dip of interpolating two *different* spectra:
``c = ((1 - a) r_p + a r_n) / sqrt((1 - a)^2 r_p^2 + a^2 r_n^2 + 2 a (1 - a) m_pn)`` with
``r^2`` the tables' mean squares and ``m_pn`` their cross term, so the RMS moves linearly
from ``r_p`` to ``r_n``; ``c(0) = c(1) = 1`` so it is continuous too.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Envelope stages.
IDLE, ATTACK, DECAY, SUSTAIN, RELEASE = 0, 1, 2, 3, 4

#: Rows of the engine's per-voice float state ``vf[N_FIELDS, n_voices]`` (float64).
#: LOGF: log2 f0 reached at the end of the current step; LOGF_TARGET: the note's log2 f0
#: (before bend); VOICED: voicedness input; LEVEL / LEVEL_TARGET: control-rate gain now /
#: at the end of the next step; VELOCITY: note gain; INC0 / INC1: phase increment
#: (cycles per sample) at the start / end of the step; LEV0 / LEV1: level ramp of the
#: step; PHASE: oscillator phase in cycles [0, 1); ENV: envelope level; REL_INC: release
#: decrement per sample; FBL: f0 the voice's newest table was band-limited for.
(
    LOGF,
    LOGF_TARGET,
    VOICED,
    LEVEL,
    LEVEL_TARGET,
    VELOCITY,
    INC0,
    INC1,
    LEV0,
    LEV1,
    PHASE,
    ENV,
    REL_INC,
    FBL,
) = range(14)
N_FIELDS = 14
#: Rows of the per-voice int state ``vi[N_IFIELDS, n_voices]`` (int64).
#: STAGE: envelope stage; PENDING: note_on waiting for the step boundary; FRESH: no previous
#: table yet; HAS_SPEC: plays precomputed spectra instead of the model.
#: CUR: which of the voice's two tables (0 or 1) is the newest. DELAY_ON: samples of the
#: current step before a new voice's onset (silent, phase held). DELAY_OFF: samples before
#: the release starts (0: none pending). Both give MIDI events sample-accurate timing.
STAGE, PENDING, FRESH, HAS_SPEC, CUR, DELAY_ON, DELAY_OFF = range(7)
N_IFIELDS = 7


@njit(cache=True)
def band_gain(f: float, nyquist: float, edge: float) -> float:  # pragma: no cover - numba
    """Raised-cosine band-limit gain of a component at ``f`` Hz (see tables.band_limit_gains)."""
    if f >= nyquist:
        return 0.0
    x = (f - edge * nyquist) / ((1.0 - edge) * nyquist)
    if x <= 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    return 0.5 + 0.5 * math.cos(math.pi * x)


@njit(cache=True)
def shift_levels(y, q, offset, stride, prev, nxt, v, fresh, ss):  # pragma: no cover - numba
    """Voice ``v``'s new levels ``expm1`` of ``y[q, offset + stride * i]`` (negatives to 0)
    into ``nxt[v]``, the old ones into ``prev[v]`` unless ``fresh``; returns ``ss`` plus their
    squares, added in order (harmonic amplitudes and noise band levels alike)."""
    for i in range(nxt.shape[1]):
        a = math.expm1(y[q, offset + stride * i])
        if a < 0.0:
            a = 0.0
        if not fresh:
            prev[v, i] = nxt[v, i]
        nxt[v, i] = a
        ss += a * a
    return ss


@njit(cache=True)
def collect_voices(vi, vf, h, idx):  # pragma: no cover - numba
    """Start pending voices (zero GRU state, attack) and list the playing ones in ``idx``:
    model-driven voices first, then voices with precomputed spectra. Returns
    ``(n_playing, n_model)``."""
    n_voices = vi.shape[1]
    for v in range(n_voices):
        if vi[PENDING, v]:
            vi[PENDING, v] = 0
            vi[STAGE, v] = ATTACK
            h[:, v, :] = 0.0
            if vi[FRESH, v]:
                vf[LEVEL, v] = vf[LEVEL_TARGET, v]
    nv = 0
    for v in range(n_voices):
        if vi[STAGE, v] != IDLE and not vi[HAS_SPEC, v]:
            idx[nv] = v
            nv += 1
    n_model = nv
    for v in range(n_voices):
        if vi[STAGE, v] != IDLE and vi[HAS_SPEC, v]:
            idx[nv] = v
            nv += 1
    return nv, n_model


@njit(cache=True)
def begin_step(
    idx, nv, vf, timbre, include_v, fmin, log_eps, f0_lo, f0_hi, bend, glide_coef, sample_rate, x
):  # pragma: no cover - numba
    """Pitch and level ramps of this step and the model input rows ``x[q]``.

    ``LOGF`` (log2 Hz) moves towards ``LOGF_TARGET + bend / 12`` by one-pole glide
    (``glide_coef = exp(-L / (glide * sr))``, 0 for no glide); the phase increment ramps
    linearly from the old to the new f0 over the step. The model sees the f0 reached at the
    end of the step (clamped to ``[f0_lo, f0_hi]``), when the new table is at full weight:
    ``x[q] = [timbre..., log(max(f, fmin) - fmin + log_eps), voicedness]``, the arithmetic of
    ``ModelInterface.inputs`` (tested against it).
    """
    n_timbre = timbre.shape[0]
    for q in range(nv):
        v = idx[q]
        f_start = 2.0 ** vf[LOGF, v]
        tgt = vf[LOGF_TARGET, v] + bend / 12.0
        lf = tgt + (vf[LOGF, v] - tgt) * glide_coef
        vf[LOGF, v] = lf
        f_end = 2.0**lf
        vf[INC0, v] = f_start / sample_rate
        vf[INC1, v] = f_end / sample_rate
        vf[LEV0, v] = vf[LEVEL, v]
        vf[LEV1, v] = vf[LEVEL_TARGET, v]
        vf[LEVEL, v] = vf[LEVEL_TARGET, v]
        for c in range(n_timbre):
            x[q, c] = timbre[c]
        fm = min(max(f_end, f0_lo), f0_hi)
        x[q, n_timbre] = np.float32(math.log(max(fm, fmin) - fmin + log_eps))
        if include_v:
            x[q, n_timbre + 1] = min(max(vf[VOICED, v], 0.0), 1.0)


@njit(cache=True)
def gather_state(h, idx, nv, out):  # pragma: no cover - numba
    """``out[l, q] = h[l, idx[q]]``."""
    for layer in range(h.shape[0]):
        for q in range(nv):
            out[layer, q, :] = h[layer, idx[q], :]


@njit(cache=True)
def scatter_state(src, idx, nv, h):  # pragma: no cover - numba
    """``h[l, idx[q]] = src[l, q]``."""
    for layer in range(h.shape[0]):
        for q in range(nv):
            h[layer, idx[q], :] = src[layer, q, :]


@njit(cache=True, fastmath=True)
def build_table(out, amps, gains, basis):  # pragma: no cover - numba
    """``out[:] = sum_h amps[h] * gains[h] * basis[h]`` (a guarded one-cycle table);
    harmonics with zero gain (above Nyquist) cost nothing."""
    out[:] = 0.0
    for h in range(amps.shape[0]):
        a = amps[h] * gains[h]
        if a == 0.0:
            continue
        row = basis[h]
        for j in range(out.shape[0]):
            out[j] += a * row[j]


@njit(cache=True)
def finish_step(
    idx,
    nv,
    y,
    h_offset,
    h_stride,
    vi,
    vf,
    amps_prev,
    amps_next,
    sample_rate,
    edge,
    rms,
    floor,
    basis,
    tables,
    gains,
    moments,
    n_offset,
    ncoef,
    ng_prev,
    ng_next,
):  # pragma: no cover - numba
    """Model rows ``y[q]`` (log1p magnitudes) -> this step's previous and next tables (and
    noise band gains).

    ``amps_next[v]`` becomes ``amps_prev[v]``; the new one is expm1 of the harmonic outputs
    ``y[q, h_offset + h_stride * (h - 1)]`` (the interface's output layout),
    normalised to waveform RMS ``rms`` (full band; a prediction whose own RMS is below
    ``floor`` is scaled by ``rms / floor`` instead, so near-silence stays quiet). Each voice owns two guarded tables
    ``tables[v, 0 | 1]``; ``CUR`` flips every step so last step's new table becomes this
    step's previous one without being rebuilt, and only the new one is built. A ``fresh``
    voice (just started) has no previous table: both are the new one.
    ``moments[q] = (r_p^2, r_n^2, m_pn)`` are the mean squares and cross term of the two
    band-limited waveforms (for the amplitude-stable crossfade).

    Band limits (``FBL``: the f0 the voice's newest table was band-limited for). The new
    table must stay alias-free during this step *and* the next, when it fades out, so it is
    band-limited for ``max(f_start, f_end, f_end * max(1, f_end / f_start))``: the step's
    highest f0 and a prediction of the next step's (the same pitch ratio again). The previous
    table keeps its band limit (so the signal stays continuous at the boundary) unless the
    voice now goes higher than that limit (a jump or an accelerating bend); then it is
    rebuilt, band-limited for this step's highest f0: never aliasing, at worst a small step
    in a near-Nyquist harmonic.

    Noise part (``ncoef.shape[0] = B > 0`` bands, outputs from ``n_offset``; wms.noise):
    the level that is normalised counts the bands too, ``r = sqrt((sum a^2 + sum v^2) / 2)``,
    and band ``b``'s gain at the end of the step is ``v_b * scale * ncoef[b]``
    (``ng_next[v]``; last step's becomes ``ng_prev[v]``, a fresh voice starts at it).
    """
    n_harm = amps_next.shape[1]
    n_noise = ncoef.shape[0]
    nyquist = 0.5 * sample_rate
    gp = gains[0]
    gn = gains[1]
    for q in range(nv):
        v = idx[q]
        fresh = vi[FRESH, v] != 0
        ss = shift_levels(y, q, h_offset, h_stride, amps_prev, amps_next, v, fresh, 0.0)
        ss = shift_levels(y, q, n_offset, 1, ng_prev, ng_next, v, fresh, ss)
        r = math.sqrt(0.5 * ss)
        scale = rms / max(r, floor) if r > 0.0 else 0.0
        for b in range(n_noise):
            g = ng_next[v, b] * scale * ncoef[b]
            ng_next[v, b] = g
            if fresh:
                ng_prev[v, b] = g
        f_start = vf[INC0, v] * sample_rate
        f_end = vf[INC1, v] * sample_rate
        fmax = max(f_start, f_end)
        f_next = max(fmax, f_end * max(1.0, f_end / f_start))
        f_prev = f_next if fresh else vf[FBL, v]
        rebuild_prev = fresh or f_prev < fmax
        if f_prev < fmax:
            f_prev = fmax
        vf[FBL, v] = f_next
        pp = 0.0
        nn = 0.0
        pn = 0.0
        for h in range(n_harm):
            an = amps_next[v, h] * scale
            amps_next[v, h] = an
            if fresh:
                amps_prev[v, h] = an
            gp[h] = band_gain((h + 1) * f_prev, nyquist, edge)
            gn[h] = band_gain((h + 1) * f_next, nyquist, edge)
            p = amps_prev[v, h] * gp[h]
            n = an * gn[h]
            pp += p * p
            nn += n * n
            pn += p * n
        cur = 1 - vi[CUR, v]
        vi[CUR, v] = cur
        build_table(tables[v, cur], amps_next[v], gn, basis)
        if rebuild_prev:
            build_table(tables[v, 1 - cur], amps_prev[v], gp, basis)
        vi[FRESH, v] = 0
        moments[q, 0] = 0.5 * pp
        moments[q, 1] = 0.5 * nn
        moments[q, 2] = 0.5 * pn


@njit(cache=True, fastmath=True)
def render_voices(
    out,
    n,
    j0,
    step_len,
    idx,
    nv,
    tables,
    moments,
    vi,
    vf,
    att_inc,
    dec_inc,
    sustain,
    release_samples,
    ng_prev,
    ng_next,
    nb0,
    na1,
    na2,
    nstate,
    nrng,
):  # pragma: no cover - numba
    """Add ``n`` samples of every voice in ``idx[:nv]`` to ``out[:n]``.

    The block starts at sample ``j0`` of the current control step (``j0 + n <= step_len``).
    ``tables[v, 1 - CUR]`` / ``tables[v, CUR]`` are the previous / next guarded tables of voice
    ``v = idx[q]``; read with 4-point Lagrange interpolation at the voice's phase (cycles).
    ADSR: linear attack to 1, linear decay to ``sustain``, linear release to 0 over
    ``release_samples`` (then IDLE). ``DELAY_ON`` samples of silence (phase held) precede a
    new voice's onset; the release starts after ``DELAY_OFF`` samples if that is set.

    Noise part (``nb0.shape[0] = B > 0``, wms.noise): per sample the voice's generator
    ``nrng[v]`` gives ``x = state / 2**31 - 1``; each of band ``b``'s ``S`` stages
    (transposed direct form II, state ``nstate[v, b, 2 s : 2 s + 2]``; ``S`` is half the
    state's last axis) gives ``u = b0 x + s1``, ``s1 = s2 - a1 u``, ``s2 = -b0 x - a2 u`` and
    passes ``u`` on as the next stage's ``x``; the voice adds
    ``sum_b ((1 - a) ng_prev + a ng_next)[v, b] * u`` times the same level, envelope and
    velocity as its tables.
    """
    table_size = tables.shape[2] - 3
    s = float(table_size)
    n_noise = nb0.shape[0]
    n_stages = nstate.shape[2] // 2
    for q in range(nv):
        v = idx[q]
        tn = tables[v, vi[CUR, v]]
        tp = tables[v, 1 - vi[CUR, v]]
        rp2 = moments[q, 0]
        rn2 = moments[q, 1]
        mpn = moments[q, 2]
        rp = math.sqrt(rp2)
        rn = math.sqrt(rn2)
        ph = vf[PHASE, v]
        st = vi[STAGE, v]
        el = vf[ENV, v]
        i0 = vf[INC0, v]
        di = vf[INC1, v] - i0
        l0 = vf[LEV0, v]
        dl = vf[LEV1, v] - l0
        vel = vf[VELOCITY, v]
        rel = vf[REL_INC, v]
        d_on = vi[DELAY_ON, v]
        d_off = vi[DELAY_OFF, v]
        rng = nrng[v]
        gpv = ng_prev[v]
        gnv = ng_next[v]
        stv = nstate[v]
        for i in range(n):
            a = (j0 + i + 1) / step_len
            if d_on > 0:
                d_on -= 1
                if d_off > 0:  # d_off > d_on: it cannot run out while the onset waits
                    d_off -= 1
                continue
            # envelope
            if st == 1:
                el += att_inc
                if el >= 1.0:
                    el = 1.0
                    st = 2
            elif st == 2:
                el -= dec_inc
                if el <= sustain:
                    el = sustain
                    st = 3
            elif st == 3:
                el = sustain
            elif st == 4:
                el -= rel
                if el <= 0.0:
                    el = 0.0
                    st = 0
            # a release delayed by D samples takes its first step at sample D: this sample
            # still plays the current stage
            if d_off > 0:
                d_off -= 1
                if d_off == 0 and st != 0:
                    st = 4
                    rel = el / release_samples if release_samples >= 1.0 else 1.0
            # 4-point Lagrange read of both tables at the same phase
            x = ph * s
            k = int(x)
            t = x - k
            if k >= table_size:
                k -= table_size
            cm1 = -t * (t - 1.0) * (t - 2.0) * (1.0 / 6.0)
            c0 = (t + 1.0) * (t - 1.0) * (t - 2.0) * 0.5
            c1 = -(t + 1.0) * t * (t - 2.0) * 0.5
            c2 = (t + 1.0) * t * (t - 1.0) * (1.0 / 6.0)
            sp = cm1 * tp[k] + c0 * tp[k + 1] + c1 * tp[k + 2] + c2 * tp[k + 3]
            sn = cm1 * tn[k] + c0 * tn[k + 1] + c1 * tn[k + 2] + c2 * tn[k + 3]
            b = 1.0 - a
            ms = b * b * rp2 + a * a * rn2 + 2.0 * a * b * mpn
            c = (b * rp + a * rn) / math.sqrt(ms) if ms > 1e-20 else 1.0
            out[i] += (b * sp + a * sn) * c * (l0 + dl * a) * el * vel
            if n_noise:
                ns = 0.0
                for m in range(n_noise):
                    rng = (rng * 1664525 + 1013904223) & 0xFFFFFFFF
                    c0 = nb0[m]
                    c1 = na1[m]
                    c2 = na2[m]
                    u = rng * (1.0 / 2147483648.0) - 1.0
                    sv = stv[m]
                    for j in range(n_stages):
                        bx = c0 * u
                        u = bx + sv[2 * j]
                        sv[2 * j] = sv[2 * j + 1] - c1 * u
                        sv[2 * j + 1] = -bx - c2 * u
                    ns += (b * gpv[m] + a * gnv[m]) * u
                out[i] += ns * (l0 + dl * a) * el * vel
            ph += i0 + di * a
            if ph >= 1.0:
                ph -= math.floor(ph)
        vf[PHASE, v] = ph
        vi[STAGE, v] = st
        vf[ENV, v] = el
        vf[REL_INC, v] = rel
        vi[DELAY_ON, v] = d_on
        vi[DELAY_OFF, v] = d_off
        nrng[v] = rng


@njit(cache=True)
def finish_block(out, n, gain, knee):  # pragma: no cover - numba
    """Master gain, then a safety soft limit: samples beyond ``knee`` are bent smoothly
    towards (never past) 1 with ``knee + (1 - knee) * tanh((|x| - knee) / (1 - knee))``.
    Returns the number of samples that were limited."""
    peak = 0.0
    for i in range(n):
        x = out[i] * gain
        out[i] = x
        peak = max(peak, abs(x))
    limited = 0
    if peak > knee:  # rare: a second pass only when needed keeps the first one vectorised
        w = 1.0 - knee
        for i in range(n):
            x = out[i]
            ax = abs(x)
            if ax > knee:
                limited += 1
                y = knee + w * math.tanh((ax - knee) / w)
                out[i] = y if x > 0 else -y
    return limited


# --------------------------------------------------------------------------- GRU pieces
@njit(cache=True)
def bias_act(y, b, act):  # pragma: no cover - numba
    """``y += b`` then activation in place: 0 none, 1 relu, 2 softplus (``log1p(exp(x))``,
    x itself above 20 like torch.nn.Softplus)."""
    for q in range(y.shape[0]):
        for j in range(y.shape[1]):
            x = y[q, j] + b[j]
            if act == 1:
                x = max(x, 0.0)
            elif act == 2:
                x = x if x > 20.0 else math.log1p(math.exp(x))
            y[q, j] = x


@njit(cache=True)
def gru_gates(gi, gh, bih, bhh, h):  # pragma: no cover - numba
    """PyTorch GRU cell update in place, from ``gi = x @ W_ih`` and ``gh = h @ W_hh``
    (``[B, 3H]`` float32, gate order r, z, n, biases added here):
    ``r = s(gi_r + gh_r)``, ``z = s(gi_z + gh_z)``, ``n = tanh(gi_n + r * gh_n)``,
    ``h = n + z * (h - n)``. Float32 arithmetic, like the network."""
    hs = h.shape[1]
    one = np.float32(1.0)
    for q in range(h.shape[0]):
        for j in range(hs):
            r = one / (one + np.exp(-(gi[q, j] + bih[j] + gh[q, j] + bhh[j])))
            z = one / (one + np.exp(-(gi[q, hs + j] + bih[hs + j] + gh[q, hs + j] + bhh[hs + j])))
            n = np.tanh(
                gi[q, 2 * hs + j] + bih[2 * hs + j] + r * (gh[q, 2 * hs + j] + bhh[2 * hs + j])
            )
            h[q, j] = n + z * (h[q, j] - n)


@njit(cache=True)
def gru_sequence(gi_all, whh, bih, bhh, h, h_all):  # pragma: no cover - numba
    """Run one GRU layer over a sequence: ``gi_all[T, 3H]`` (``x @ W_ih``), state ``h[1, H]``
    (updated), outputs ``h_all[T, H]``. Offline only (``np.dot`` allocates here)."""
    for t in range(gi_all.shape[0]):
        gh = np.dot(h, whh)
        gru_gates(gi_all[t : t + 1], gh, bih, bhh, h)
        h_all[t] = h[0]
