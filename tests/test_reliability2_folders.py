"""Issue 23 (reliability round two), the folder cases: the pytest plugin's ``name=`` cannot leave
``--edgeopt-save`` and its work folders stay under pytest's temporary folder; two sessions saving one name
do not overwrite each other; a reused ``--out`` of another model is refused; ``lab head`` refuses a port in
Ray's worker range before starting Ray; a run says which profile file it used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.errors import ConfigError
from tests.test_pytest_plugin import project  # noqa: F401  (a fixture)

pytest_plugins = ["pytester"]


def test_plugin_name_that_leaves_the_save_folder_is_a_clear_failure(project: pytest.Pytester) -> None:  # noqa: F811
    project.makepyfile(test_names="""
        import pytest

        @pytest.mark.parametrize("name", ["../../pwned", "<script>x</script>/..", "a/b", "-dash", ".hidden", ""])
        def test_bad(edgeopt_budget, name):
            edgeopt_budget("tiny.onnx", p95_ms=1000, name=name)

        def test_good(edgeopt_budget):
            assert edgeopt_budget("tiny.onnx", p95_ms=1000, name="ok-1.v2_x").saved.name == "ok-1.v2_x__fast.json"
    """)
    (project.path / "saved" / "a" / "b").mkdir(parents=True)
    before = set(project.path.iterdir())
    result = project.runpytest("-rA", "--edgeopt-profile", "fast.yaml", "--edgeopt-save", "saved/a/b",
                               "--basetemp", str(project.path / "basetemp"))
    result.assert_outcomes(passed=1, failed=6)
    result.stdout.fnmatch_lines(["*edgeopt: name='../../pwned': a name is letters, digits, '.', '_' and '-', "
                                 "starting with a letter or digit, at most 200 characters (it becomes a file name)*",
                                 "*edgeopt: name='<script>x</script>/..': a name is letters*"])
    assert "Traceback" not in result.stdout.str() and "FileNotFoundError" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()
    assert not [p for p in set(project.path.iterdir()) - before if "pwned" in p.name or "fast" in p.name]
    assert sorted(p.name for p in (project.path / "saved").rglob("*")) == ["a", "b", "ok-1.v2_x__fast.json"]
    assert not list(project.path.parent.glob("pwned*"))


def test_plugin_work_folders_live_under_pytest_basetemp_and_are_removed(project: pytest.Pytester) -> None:  # noqa: F811
    project.makepyfile(test_work="""
        from pathlib import Path

        def test_a(edgeopt_budget, pytestconfig):
            edgeopt_budget("tiny.onnx", p95_ms=1000)
            work = pytestconfig.stash[__import__("edgeopt.pytest_plugin").pytest_plugin._SESSION].work_dir()
            base = Path(pytestconfig.option.basetemp).resolve()
            assert work.resolve().is_relative_to(base), (work, base)
            assert any(work.iterdir())
    """)
    base = project.path / "basetemp"
    project.runpytest("--edgeopt-profile", "fast.yaml", "--basetemp", str(base)).assert_outcomes(passed=1)
    assert not list(base.glob("edgeopt*"))  # removed when the session ended


def test_two_sessions_saving_one_name_do_not_overwrite(project: pytest.Pytester) -> None:  # noqa: F811
    """Session A holds 'model' while it runs a second pytest process (session B) saving another model under the
    same name into the same folder: B's test fails with the holder named, A's file stays A's."""
    from tests import zoo

    zoo.tiny_mlp(project.path / "other.onnx")
    project.makepyfile(test_b="""
        def test_b(edgeopt_budget):
            edgeopt_budget("other.onnx", p95_ms=1000, name="model")
    """)
    project.makepyfile(test_a="""
        import subprocess, sys
        from pathlib import Path

        def test_a(edgeopt_budget):
            result = edgeopt_budget("tiny.onnx", p95_ms=1000, name="model")
            b = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_b.py",
                                "--edgeopt-profile", "fast.yaml", "--edgeopt-save", "saved",
                                "--basetemp", "basetemp-b"], capture_output=True, text=True, timeout=300)
            print(b.stdout[-3000:])
            assert b.returncode == 1, b.stdout + b.stderr
            assert "--edgeopt-save saved: another pytest session is saving model__fast.json there (pid " in b.stdout
            assert "edgeopt pytest --edgeopt-save model__fast" in b.stdout
            assert "give each session's model its own name= or its own --edgeopt-save" in b.stdout
            assert "During handling" not in b.stdout and "choose another --out" not in b.stdout  # the line alone
            assert result.saved.read_text() == Path("saved/model__fast.json").read_text()
    """)
    result = project.runpytest("-rA", "test_a.py", "--edgeopt-profile", "fast.yaml", "--edgeopt-save", "saved",
                               "--basetemp", str(project.path / "basetemp-a"))
    result.assert_outcomes(passed=1)
    saved = project.path / "saved"
    assert sorted(p.name for p in saved.iterdir()) == ["model__fast.json"]  # the claim is gone with session A
    assert "other.onnx" not in (saved / "model__fast.json").read_text()


@pytest.mark.parametrize("port", [10002, 16379, 19999])
def test_lab_head_refuses_a_port_in_rays_worker_range_before_starting_ray(port: int) -> None:
    result = subprocess.run([sys.executable, "-m", "edgeopt", "lab", "head", "--address", f"127.0.0.1:{port}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert (f"--address '127.0.0.1:{port}': port {port} is in Ray's worker port range 10002-19999, which Ray keeps "
            "for its workers; choose a port outside it, e.g. 6379") in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3


def test_lab_head_print_command_keeps_ports_outside_the_worker_range() -> None:
    from edgeopt.lab.cluster import head_address

    assert head_address("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert head_address("10.0.0.2:20000") == ("10.0.0.2", 20000)


def test_a_reused_out_of_another_model_is_refused_or_replaced_with_force(tmp_path: Path) -> None:
    """Item 6: the run folder records its model (model.json before measuring, model_sha256 in summary.json); a run
    of another model there stops with exit 2 naming both; --force removes the other model's results first."""
    from edgeopt.reports.run_summary import load_summary
    from tests import zoo
    from tests.test_cli import edgeopt, write_profile

    profile, out = write_profile(tmp_path), tmp_path / "out"
    first, second = zoo.tiny_conv_model(tmp_path / "first.onnx"), zoo.tiny_mlp(tmp_path / "second.onnx")
    done = edgeopt("run", first, "--profile", profile, "--out", out, "--variant", "fp32", "--variant", "fp16")
    assert done.returncode in (0, 1), done.stderr
    marker = json.loads((out / "model.json").read_text())
    assert marker["model"] == str(first) and load_summary(out).model_sha256 == marker["model_sha256"]
    old = sorted(p.name for p in (out / "measurements").glob("*.json"))

    refused = edgeopt("run", second, "--profile", profile, "--out", out, "--variant", "fp32")
    assert refused.returncode == 2, refused.stderr
    assert (f"--out {out}: this folder holds the results of another model, {first} (sha256 "
            f"{marker['model_sha256'][:12]}); this run's model is {second} (sha256 ") in refused.stderr
    assert "choose a fresh --out, or pass --force to remove the other model's variants and measurements first" \
        in refused.stderr
    assert sorted(p.name for p in (out / "measurements").glob("*.json")) == old  # nothing touched

    again = edgeopt("run", first, "--profile", profile, "--out", out, "--variant", "fp32")  # the same model: fine
    assert again.returncode in (0, 1), again.stderr

    forced = edgeopt("run", second, "--profile", profile, "--out", out, "--variant", "fp32", "--force")
    assert forced.returncode in (0, 1), forced.stderr
    assert "holds results of another model" in forced.stderr
    assert not (out / "variants" / "fp16.onnx").exists()
    assert [p.name for p in (out / "measurements").glob("*.json")] == ["fp32__fast.json"]
    assert load_summary(out).model == str(second)


def test_a_crashed_run_counts_through_its_marker(tmp_path: Path) -> None:
    from edgeopt.reports.run_summary import RunLayout
    from edgeopt.workflows.plan import RunConfig, plan_run
    from tests import zoo
    from tests.test_cli import write_profile

    profile, out = write_profile(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "model.json").write_text(json.dumps({"model": "other.onnx", "model_sha256": "ab" * 32}))
    model = zoo.tiny_mlp(tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match=r"another model, other.onnx \(sha256 abababababab\)"):
        plan_run(RunConfig(model=str(model), profiles=(str(profile),), out_dir=out, variants=("fp32",)))
    plan = plan_run(RunConfig(model=str(model), profiles=(str(profile),), out_dir=out, variants=("fp32",), force=True))
    assert plan.replaces == "other.onnx (sha256 abababababab)" and RunLayout(out).model_marker == out / "model.json"


def test_the_plan_names_the_profile_file_a_shadowing_name_came_from(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Weak case env-profile-path-shadows-shipped: EDGEOPT_PROFILE_PATH/host-cpu.yaml replaces the shipped host-cpu;
    the plan line says which file was used."""
    from edgeopt.profiles.schema import shipped_profiles_dir
    from edgeopt.workflows.plan import RunConfig, plan_run
    from tests import profiles, zoo

    assert (shipped_profiles_dir() / "host-cpu.yaml").is_file()
    shadow = profiles.write_profile(tmp_path, "host-cpu", description="a local host-cpu")
    monkeypatch.setenv("EDGEOPT_PROFILE_PATH", str(tmp_path))
    model = zoo.tiny_mlp(tmp_path / "m.onnx")
    plan = plan_run(RunConfig(model=str(model), profiles=("host-cpu",), out_dir=tmp_path / "out", variants=("fp32",)))
    assert f"plan: profiles host-cpu from {shadow}; variants fp32; " in plan.describe()[1]
    assert plan.profile_files() == {"host-cpu": str(shadow)}  # what summary.json's profile_files records


def test_a_token_file_others_can_read_is_named_with_the_fix(tmp_path: Path) -> None:
    """Weak case lab-token-file-perms: `ray get-auth-token --generate` leaves ~/.ray/auth_token 0644."""
    from edgeopt.lab.cluster import exposed_token_file

    assert exposed_token_file(tmp_path) is None  # no token file
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("secret")
    token.chmod(0o644)
    said = exposed_token_file(tmp_path)
    assert said is not None and f"{token} is readable by other users (mode 0644)" in said
    assert f"chmod 600 {token}" in said
    token.chmod(0o600)
    assert exposed_token_file(tmp_path) is None


def test_a_cell_folder_whose_process_died_is_swept_and_a_live_ones_kept(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab node killed mid-cell takes the cell's worker with it (Ray kills a task's children): its folder stays
    until the next cell or ``lab join`` on the board removes it; a folder whose process runs is kept."""
    import psutil

    from edgeopt.lab.node import _new_cell_folder, sweep_stale_cells

    monkeypatch.setenv("EDGEOPT_LAB_WORKDIR", str(tmp_path))
    live = _new_cell_folder("livenode0000000")
    dead = tmp_path / "edgeopt-cell-deadnode000-x"
    dead.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(gone.pid).create_time()
    gone.wait()
    (dead / "owner.json").write_text(json.dumps({"pid": gone.pid, "created": created}))
    (dead / "fp32.onnx").write_bytes(b"x")
    unreadable = tmp_path / "edgeopt-cell-writing0000-y"  # no owner record yet: not ours to judge
    unreadable.mkdir()

    assert sweep_stale_cells() == [dead.name]
    assert live.is_dir() and unreadable.is_dir() and not dead.exists()

    dead.mkdir()  # again, then the board joins the lab: lab join removes it and says so
    (dead / "owner.json").write_text(json.dumps({"pid": gone.pid, "created": created}))
    joined = subprocess.run([sys.executable, "-m", "edgeopt", "lab", "join", "--address", "127.0.0.1:6379",
                             "--print-command"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "EDGEOPT_LAB_WORKDIR": str(tmp_path)})
    if "Ray is not installed" in joined.stderr:
        pytest.skip("Ray is not installed")
    assert joined.returncode == 0, joined.stderr
    assert f"removed {dead}: a cell of a node that died mid-cell" in joined.stdout
    assert not dead.exists() and live.is_dir()
