"""ISA tiers for bench.py: which tiers this CPU can emulate, each worker's cap, the data file.

Readers' CPUs fall in four tiers (oneDNN's names): ``AVX2`` (most laptops),
``AVX512_CORE`` (AVX-512 without bf16), ``AVX512_CORE_BF16`` (AMD Zen 4, Intel
Cooper Lake) and ``AVX512_CORE_AMX`` (Intel Sapphire Rapids and later).  A CPU
runs its own tier and, by capping the instruction set its libraries may use,
every tier below it:

- MXNet workers (book, ours, peak): ``DNNL_MAX_CPU_ISA=<TIER>`` and
  ``GLUON_RESNET_DISABLE_AMX=1`` (``import gluon_resnet`` leaves a user's
  ``DNNL_MAX_CPU_ISA`` alone; the second variable says the same twice).
- PyTorch workers: ``ONEDNN_MAX_CPU_ISA=<TIER>`` and ``ATEN_CPU_CAPABILITY``
  (``avx2`` at the AVX2 tier, ``avx512`` above it) for ATen's own kernels.
- ONNX Runtime: its MLAS kernels pick their instruction set from CPUID and have
  no documented run-time cap, so ORT runs uncapped at every tier and its rows say so.

The CPU's own (top) tier runs with no cap at all, as a reader's process does: a
cap at the AMX level would hand AMX to the book's process, which never asked
Linux for the tile registers.
"""

import json
import os
import re

TIERS = ("AVX2", "AVX512_CORE", "AVX512_CORE_BF16", "AVX512_CORE_AMX")

#: /proc/cpuinfo flags a tier needs (each tier also needs those of the tiers below it).
_NEEDS = {
    "AVX2": {"avx2", "fma"},
    "AVX512_CORE": {"avx512f", "avx512bw", "avx512dq", "avx512vl"},
    "AVX512_CORE_BF16": {"avx512_bf16"},
    "AVX512_CORE_AMX": {"amx_bf16", "amx_tile"},
}
#: Tiers with bf16 kernels: bf16 rows run only there.
BF16_TIERS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX")
#: The flags a data-file row records.
RECORDED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")

ORT_UNCAPPED = ("ONNX Runtime runs uncapped: its MLAS kernels choose their instruction set "
                "from CPUID and have no run-time cap")


def supported_tiers(flags):
    """The tiers a CPU with these /proc/cpuinfo ``flags`` can run, lowest first."""
    flags, needed, tiers = set(flags), set(), []
    for tier in TIERS:
        needed |= _NEEDS[tier]
        if not needed <= flags:
            break
        tiers.append(tier)
    return tiers


def plan_tiers(text, flags):
    """The tiers ``--tiers text`` asks for on this CPU, lowest first.

    ``auto``: the CPU's own tier; ``all``: every tier it supports; else a
    comma-separated list of tier names (any case).  Raises ``SystemExit`` with a
    one-sentence message for an unknown tier or one this CPU cannot run.
    """
    supported = supported_tiers(flags)
    if not supported:
        raise SystemExit("bench.py: --tiers: this CPU has no AVX2, the lowest tier measured")
    text = (text or "auto").strip().lower()
    if text == "auto":
        return [supported[-1]]
    if text == "all":
        return supported
    asked = [name.strip().upper() for name in text.split(",") if name.strip()]
    for name in asked:
        if name not in TIERS:
            raise SystemExit("bench.py: --tiers: unknown tier %r; choose from auto, all, %s"
                             % (name, ", ".join(TIERS)))
        if name not in supported:
            missing = sorted(set().union(*(_NEEDS[t] for t in TIERS[:TIERS.index(name) + 1]))
                             - set(flags))
            raise SystemExit("bench.py: --tiers: this CPU cannot run tier %s (it lacks %s)"
                             % (name, ", ".join(missing)))
    return [t for t in TIERS if t in asked]


def has_bf16(tier):
    return tier in BF16_TIERS


def worker_env(tier, side, flags):
    """Environment variables a worker of ``side`` gets at ``tier`` (none at the CPU's own)."""
    if tier == supported_tiers(flags)[-1]:
        return {}
    if side == "torch":
        return {"ONEDNN_MAX_CPU_ISA": tier,
                "ATEN_CPU_CAPABILITY": "avx2" if tier == "AVX2" else "avx512"}
    if side == "ort":
        return {}
    return {"DNNL_MAX_CPU_ISA": tier, "GLUON_RESNET_DISABLE_AMX": "1"}


def machine_kind(cpu_model, flags):
    """A label of the machine kind, e.g. ``AMD EPYC (Zen 4)`` or ``Intel Xeon (AMX)``."""
    words = (cpu_model or "unknown CPU").replace("(R)", "").replace("(TM)", "").split()
    vendor = "AMD" if "AMD" in words else "Intel" if "Intel" in words else words[0]
    line = next((w for w in ("EPYC", "Ryzen", "Threadripper", "Xeon", "Core") if w in words), "")
    flags = set(flags)
    if vendor == "AMD":
        kind = ("Zen 5" if "avx512_vp2intersect" in flags else "Zen 4" if "avx512f" in flags
                else "AVX2" if "avx2" in flags else "older")
    else:
        kind = {"AVX512_CORE_AMX": "AMX", "AVX512_CORE_BF16": "AVX512-BF16",
                "AVX512_CORE": "AVX-512", "AVX2": "AVX2"}.get(
                    (supported_tiers(flags) or ["older"])[-1], "older")
    return "%s (%s)" % (" ".join(w for w in (vendor, line) if w), kind)


def slug(label):
    """``AMD EPYC (Zen 4)`` -> ``amd-epyc-zen-4``: the data file's name."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def data_rows(summaries, meta, settings, versions, flags):
    """One dict per measured row of every tier's summary (the data file's lines)."""
    kind = machine_kind(meta["cpu_model"], flags)
    top = supported_tiers(flags)[-1]
    rows = []
    for summary in summaries:
        tier = summary["tier"]
        for name, entry in summary["variants"].items():
            if not entry["available"]:
                continue
            rows.append({
                "date": meta["date"], "cpu_model": meta["cpu_model"], "cores": meta["cores"],
                "cpu_flags": {f: f in flags for f in RECORDED_FLAGS}, "machine_kind": kind,
                "tier": tier, "capped": tier != top and entry["side"] != "ort",
                "variant": name, "side": entry["side"], "mode": entry["mode"],
                "precision": entry["precision"], "label": entry["label"],
                "default": name in (summary["default_training"], summary["default_inference"]),
                "images_per_s": entry["images_per_s"], "runs": entry["runs"],
                "rounds": settings["rounds"], "versions": versions,
                "settings": {k: settings[k] for k in ("batch_size", "size", "steps", "warmup")},
            })
    return rows


def append_rows(rows, folder, label):
    """Append ``rows`` as JSON lines to ``folder/<slug(label)>.jsonl``; returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, slug(label) + ".jsonl")
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    return path
