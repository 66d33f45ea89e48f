"""The k-means backend and OPENBLAS_CORETYPE decisions (issue 18) as pure functions of CPU flags,
BLAS core names and the environment; /proc/cpuinfo parsing; the pipeline's one-time setting."""
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cometa.core import blas
from cometa.core.blas import (
    CpuInfo,
    choose_kmeans_backend,
    cpu_info,
    faiss_is_generic,
    openblas_coretype_for,
    simd_level,
)
from cometa.core.lloyd import lloyd, numpy_lloyd
from cometa.core.pseudo_labels import kmeans_plus_plus

AVX512 = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"})
AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX_ONLY = frozenset({"sse4_2", "avx"})
XEON = CpuInfo("Intel(R) Xeon(R) CPU @ 2.80GHz", "GenuineIntel", AVX512)  # the machine
XEON_AVX2 = CpuInfo("Intel(R) Xeon(R) CPU E5-2680 v3", "GenuineIntel", AVX2)
EPYC = CpuInfo("AMD EPYC", "AuthenticAMD", AVX2)
OLD = CpuInfo("Intel(R) Xeon(R) CPU X5650", "GenuineIntel", frozenset({"sse4_2"}))


def test_simd_levels_from_flags():
    assert [simd_level(f) for f in (frozenset(), OLD.flags, AVX_ONLY, AVX2, AVX512)] == [0, 0, 1, 2, 3]
    assert simd_level(AVX2 | {"avx512f"}) == 2  # AVX-512 F alone is not what SkylakeX kernels need
    assert simd_level({"avx", "avx2"}) == 1  # AVX2 without FMA: no Haswell kernels


@pytest.mark.parametrize("flags, core, generic", [
    (AVX512, "Prescott", True), (AVX512, "Sandybridge", True), (AVX2, "Nehalem", True),
    (AVX512, "SkylakeX", False), (AVX512, "Haswell", False), (AVX2, "Zen", False), (AVX2, "Haswell", False),
    (AVX_ONLY, "Prescott", False), (OLD.flags, "Prescott", False),  # the CPU has nothing better
    (AVX512, "NEOVERSEN1", False), (AVX512, None, False),  # unknown names are not judged
])
def test_faiss_is_generic(flags, core, generic):
    assert faiss_is_generic(flags=flags, faiss_core=core) is generic


def _auto(cpu, faiss_core, scipy_core="SkylakeX", torch_blas="MKL", **kw):
    return choose_kmeans_backend(flags=cpu.flags, vendor=cpu.vendor, faiss_core=faiss_core, scipy_core=scipy_core,
                                 torch_blas=torch_blas, **kw)


def test_intel_avx512_with_prescott_runs_torch_and_children_get_skylakex():
    choice = _auto(XEON, "Prescott")
    assert (choice.backend, choice.device) == ("torch", "cpu")
    assert "Prescott" in choice.reason and "MKL" in choice.reason
    assert _auto(XEON, "Prescott", torch_blas=None).backend == "sklearn"  # torch without MKL: scipy's OpenBLAS
    decision = openblas_coretype_for(cpu=XEON, faiss_core="Prescott", env={})
    assert (decision.value, decision.source) == ("SkylakeX", "cometa")
    assert openblas_coretype_for(cpu=XEON_AVX2, faiss_core="Prescott", env={}).value == "Haswell"
    assert openblas_coretype_for(cpu=CpuInfo("AMD EPYC 9B14", "AuthenticAMD", AVX2), faiss_core="Prescott",
                                 env={}).value == "Zen"
    # once the children run with it, their faiss reports SkylakeX and keeps faiss
    assert _auto(XEON, "SkylakeX").backend == "faiss"


def test_amd_with_generic_faiss_runs_sklearn_on_scipys_openblas():
    zen5 = CpuInfo("AMD EPYC 9B45", "AuthenticAMD", AVX512)
    choice = _auto(zen5, "Prescott", scipy_core="SkylakeX")
    assert choice.backend == "sklearn" and "SkylakeX" in choice.reason
    assert _auto(zen5, "Prescott", scipy_core="Katmai").backend == "torch"  # scipy generic too (a user's setting)


def test_amd_recognised_keeps_faiss_and_sets_nothing():
    assert _auto(EPYC, "Zen", scipy_core="Haswell") == blas.BackendChoice(
        "faiss", "cpu", "faiss's OpenBLAS runs 'Zen' kernels on this avx2 CPU")
    decision = openblas_coretype_for(cpu=EPYC, faiss_core="Zen", env={"PATH": "/bin"})
    assert (decision.value, decision.source) == (None, "none")


def test_user_set_coretype_is_never_overridden():
    for value in ("Haswell", "Prescott"):
        decision = openblas_coretype_for(cpu=XEON, faiss_core="Prescott", env={"OPENBLAS_CORETYPE": value})
        assert (decision.value, decision.source) == (value, "user")
    # a user's Prescott makes faiss generic in this process too: k-means leaves it
    assert _auto(XEON, "Prescott", scipy_core="Katmai").backend == "torch"


def test_cpus_without_avx2_keep_faiss():
    for cpu in (OLD, CpuInfo("Intel Sandy Bridge", "GenuineIntel", AVX_ONLY), CpuInfo()):
        assert _auto(cpu, "Prescott").backend == "faiss"
        assert openblas_coretype_for(cpu=cpu, faiss_core="Prescott", env={}).value is None


def test_gpu_selection():
    pick = lambda **kw: _auto(XEON, "Prescott", **kw)  # noqa: E731
    assert (pick(faiss_gpus=2, cuda=True).backend, pick(faiss_gpus=2, cuda=True).device) == ("faiss", "cuda")
    assert (pick(cuda=True).backend, pick(cuda=True).device) == ("torch", "cuda")  # faiss-cpu: torch on the GPU
    assert "no GPU support" in pick(cuda=True).reason
    assert pick(faiss_gpus=1, cuda=True, gpu=False).device == "cpu"
    assert (pick(backend="torch", faiss_gpus=1, cuda=True).backend, pick(backend="torch", cuda=True).device) == \
        ("torch", "cuda")
    assert pick(backend="faiss", cuda=True).device == "cpu"  # faiss has no GPU here; torch's is not faiss's
    assert (pick(backend="sklearn", cuda=True).backend, pick(backend="sklearn", cuda=True).device) == ("sklearn", "cpu")
    assert pick(gpu=True, faiss_gpus=1).device == "cuda"
    with pytest.raises(ValueError, match="gpu=True but no GPU"):
        pick(gpu=True)
    with pytest.raises(ValueError, match="gpu=True but no GPU"):
        pick(gpu=True, backend="sklearn", cuda=True)
    with pytest.raises(ValueError, match=re.escape("backend must be auto|faiss|sklearn|torch")):
        pick(backend="mkl")
    with pytest.raises(ValueError, match="gpu must be"):
        pick(gpu="yes")


def test_cpu_info_parses_the_first_processor(tmp_path):
    text = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.80GHz\n"
            f"flags\t\t: fpu sse4_2 {' '.join(sorted(AVX512))}\n\n"
            "processor\t: 1\nvendor_id\t: Other\nmodel name\t: other\nflags\t\t: fpu\n")
    (tmp_path / "cpuinfo").write_text(text)
    cpu = cpu_info(str(tmp_path / "cpuinfo"))
    assert cpu == CpuInfo("Intel(R) Xeon(R) CPU @ 2.80GHz", "GenuineIntel", AVX512 | {"fpu"})
    missing = cpu_info(str(tmp_path / "absent"))  # not Linux: numpy's runtime detection, or nothing
    assert isinstance(missing.flags, frozenset) and missing.model


def test_apply_sets_the_variable_once_and_keeps_the_users(monkeypatch, capsys):
    monkeypatch.setattr(blas, "_applied", [])
    monkeypatch.setattr(blas, "cpu_info", lambda: XEON)
    cores = {"faiss": "Prescott"}
    monkeypatch.setattr(blas, "blas_cores", lambda: cores)
    monkeypatch.setattr(blas, "coretype_runs", lambda value: (True, ""))  # this CPU may lack AVX-512
    env = {"PATH": "/bin"}
    first = blas.apply_openblas_coretype(env)
    assert env == {"PATH": "/bin", "OPENBLAS_CORETYPE": "SkylakeX"} and first.source == "cometa"
    assert capsys.readouterr().out.strip() == f"cometa: {first.reason}"
    cores["faiss"] = "SkylakeX"  # a faiss loaded after the setting would report it: still cometa's decision
    assert blas.apply_openblas_coretype(env) == first and capsys.readouterr().out == ""
    other = {}
    assert blas.apply_openblas_coretype(other).source == "none" and "OPENBLAS_CORETYPE" not in other
    user = {"OPENBLAS_CORETYPE": "Haswell"}
    assert blas.apply_openblas_coretype(user).source == "user" and user == {"OPENBLAS_CORETYPE": "Haswell"}


def test_the_variable_reaches_faiss_openblas_in_a_child():
    """What the pipeline relies on: faiss-cpu's bundled OpenBLAS obeys OPENBLAS_CORETYPE at load."""
    code = "import json; from cometa.core.blas import blas_cores; print(json.dumps(blas_cores()))"
    env = dict(os.environ, OPENBLAS_CORETYPE="Nehalem", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    cores = json.loads(out.stdout.strip().splitlines()[-1])
    if cores["faiss"] is None:
        pytest.skip("threadpoolctl does not see faiss's BLAS in this build")
    assert cores["faiss"] == "Nehalem"


def test_the_pipeline_sets_and_records_the_variable_for_its_kernels(monkeypatch, tmp_path, capsys):
    import yaml

    from cometa.pipeline.run import run_pipeline

    # setenv first, so that teardown removes what the pipeline sets: a SkylakeX left in this
    # process's environment would reach every later test's kernels (SIGILL on a CPU without AVX-512)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "")
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.setattr(blas, "_applied", [])
    monkeypatch.setattr(blas, "cpu_info", lambda: XEON)
    monkeypatch.setattr(blas, "blas_cores", lambda: {"faiss": "Prescott"})
    monkeypatch.setattr(blas, "coretype_runs", lambda value: (True, ""))
    for run in ("a", "b"):  # no step runs: only the set-up
        assert run_pipeline("tiny", run_dir=tmp_path / run, progress=False, only=["no-such-step"]) == {}
        assert os.environ["OPENBLAS_CORETYPE"] == "SkylakeX"  # what the kernels inherit
        runtime = yaml.safe_load((tmp_path / run / "config.yaml").read_text())["runtime"]
        assert runtime["openblas_coretype"]["value"] == "SkylakeX"
        assert runtime["openblas_coretype"]["source"] == "cometa"
    assert capsys.readouterr().out.count("OPENBLAS_CORETYPE=SkylakeX") == 1  # said once
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setattr(blas, "_applied", [])
    run_pipeline("tiny", run_dir=tmp_path / "c", progress=False, only=["no-such-step"])
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"
    runtime = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())["runtime"]
    assert runtime["openblas_coretype"]["source"] == "user"


def test_a_core_that_kills_its_probe_is_not_handed_on(monkeypatch):
    """OpenBLAS takes a forced core without checking the CPU; a child that dies with it (SIGILL on a
    CPU or hypervisor without the core's instructions) leaves the variable unset, and says why."""
    monkeypatch.setattr(blas, "_applied", [])
    monkeypatch.setattr(blas, "cpu_info", lambda: XEON)
    monkeypatch.setattr(blas, "blas_cores", lambda: {"faiss": "Prescott"})
    monkeypatch.setattr(blas, "_PROBE_CODE", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    blas.coretype_runs.cache_clear()
    try:
        env = {"PATH": "/bin"}
        decision = blas.apply_openblas_coretype(env)
        assert env == {"PATH": "/bin"} and decision.value is None and decision.source == "none"
        assert "OPENBLAS_CORETYPE=SkylakeX was killed by SIGILL: left unset" in decision.reason
        monkeypatch.setattr(blas, "_PROBE_CODE", "import sys; sys.exit('no faiss here')")
        blas.coretype_runs.cache_clear()
        assert blas.coretype_runs("Haswell") == (False, "a probe process with OPENBLAS_CORETYPE=Haswell "
                                                       "exited with 1 (no faiss here)")
    finally:
        blas.coretype_runs.cache_clear()


def test_the_probe_runs_numpy_scipy_and_faiss_under_a_core_every_x86_cpu_has():
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("Prescott is an x86 core")
    blas.coretype_runs.cache_clear()
    assert blas.coretype_runs("Prescott") == (True, "")


# ---------------------------------------------------------------------------------------------
# the fallback when faiss is generic: cometa's chunked Lloyd on numpy's OpenBLAS


def test_generic_faiss_falls_back_to_numpy_when_numpys_openblas_knows_the_cpu():
    choice = _auto(XEON, "Prescott", numpy_core="SkylakeX")
    assert (choice.backend, choice.device) == ("numpy", "cpu") and "'SkylakeX'" in choice.reason
    zen5 = CpuInfo("AMD EPYC 9B45", "AuthenticAMD", AVX512)
    assert _auto(zen5, "Prescott", numpy_core="Zen").backend == "numpy"
    # numpy's OpenBLAS generic too (a user's OPENBLAS_CORETYPE=Prescott reaches every OpenBLAS): as before
    assert _auto(XEON, "Prescott", numpy_core="Prescott").backend == "torch"
    assert _auto(zen5, "Prescott", numpy_core="Prescott", scipy_core="SkylakeX").backend == "sklearn"
    assert _auto(XEON, "SkylakeX", numpy_core="SkylakeX").backend == "faiss"  # faiss fast: faiss
    assert _auto(XEON, "Prescott", numpy_core="SkylakeX", cuda=True).device == "cuda"  # a GPU first
    assert _auto(XEON, "SkylakeX", backend="numpy").backend == "numpy"


def _unit_mixture(n, dim, k, *, seed, spread=1.5):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim))
    x = centres[rng.integers(k, size=n)] + rng.standard_normal((n, dim)) * spread * np.sqrt(1.0 / dim) * \
        np.linalg.norm(centres, axis=1).mean()
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("chunk_rows, threads", [(256, 2), (7, 3), (5000, 1)])
def test_numpy_lloyd_is_lloyd_written_out(chunk_rows, threads):
    """Against Lloyd's iterations in float64 written out, chunking and threads whatever they are."""
    x = _unit_mixture(900, 12, 9, seed=1)
    init = x[:9].copy()
    r = numpy_lloyd(x, init, niter=4, threads=threads, chunk_rows=chunk_rows)
    x64, c = x.astype(np.float64), init.astype(np.float64)
    for _ in range(4):
        labels = ((x64[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        c = np.stack([x64[labels == j].mean(0) for j in range(9)])  # no cluster empties on this data
    d = ((x64[:, None] - c[None]) ** 2).sum(-1)
    np.testing.assert_allclose(r.centroids, c, atol=1e-5)
    assert np.array_equal(r.labels, d.argmin(1)) and r.labels.dtype == np.int64 and r.iterations == 4
    assert r.objective == pytest.approx(d.min(1).sum(), rel=1e-5)


def test_numpy_lloyd_reaches_the_other_backends_objective():
    x = _unit_mixture(4000, 32, 40, seed=2)
    init = kmeans_plus_plus(x, 40, seed=0)
    ours = lloyd(x, init, niter=20, backend="numpy")
    for other in ("faiss", "torch"):
        ref = lloyd(x, init, niter=20, backend=other).objective
        assert abs(ours.objective - ref) <= 1e-4 * ref, (other, ours.objective, ref)
    assert np.array_equal(ours.labels, lloyd(x, init, niter=20, backend="numpy").labels)  # deterministic


def test_numpy_lloyd_refills_an_empty_cluster_with_the_farthest_point():
    # two tight groups and a third centroid far from every point: it empties in the first assignment
    x = np.array([[1, 0], [0.99, 0.141], [0.98, 0.199], [0, 1], [0.141, 0.99], [-0.6, -0.8]], dtype=np.float32)
    init = np.array([[1, 0], [0, 1], [-5, 5]], dtype=np.float32)
    r = numpy_lloyd(x, init, niter=1, threads=1)
    # after the assignment, (-0.6, -0.8) is the farthest point from its centroid (group 0 or 1): it
    # becomes centroid 2, and its old cluster's mean no longer counts it
    np.testing.assert_allclose(r.centroids[2], x[5], atol=1e-6)
    assert r.labels[5] == 2 and set(r.labels[:3]) == {0} and set(r.labels[3:5]) == {1}
    with pytest.raises(ValueError, match="numpy backend runs on the CPU only"):
        lloyd(x, init, niter=1, backend="numpy", device="cuda")


def test_make_lab_exports_the_pipelines_coretype_to_the_kernels(monkeypatch, capsys):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(blas, "_applied", [])
    monkeypatch.setattr(blas, "cpu_info", lambda: XEON)
    monkeypatch.setattr(blas, "blas_cores", lambda: {"faiss": "Prescott"})
    monkeypatch.setattr(blas, "coretype_runs", lambda value: (True, ""))
    monkeypatch.setattr(blas.os, "environ", {"PATH": "/bin"})  # apply_openblas_coretype's default env
    assert blas.main(["--coretype"]) == 0
    out = capsys.readouterr()
    assert out.out == "SkylakeX\n" and "OPENBLAS_CORETYPE=SkylakeX" in out.err
    monkeypatch.setattr(blas, "_applied", [])
    monkeypatch.setattr(blas, "blas_cores", lambda: {"faiss": "SkylakeX"})
    monkeypatch.setattr(blas.os, "environ", {"PATH": "/bin"})
    blas.main(["--coretype"])
    assert capsys.readouterr().out == "\n"  # nothing to set
    # the lab target exports what that prints before the server (and so its kernels) starts
    recipe = (Path(__file__).resolve().parent.parent / "Makefile").read_text().split("\nlab: setup\n")[1]
    recipe = recipe.split("\n\n")[0]
    decide = recipe.index('coretype="$$($(PY) -m cometa.core.blas --coretype)"')
    assert decide < recipe.index('export OPENBLAS_CORETYPE="$$coretype"') < recipe.index("exec $(PY) -m jupyter lab")
