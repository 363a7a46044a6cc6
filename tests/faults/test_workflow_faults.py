"""Issue 18's workflow-level fault kinds on a real ``vllm serve`` session of the workflow (see
workflow_faults.py): Snakemake itself interrupted (Ctrl-C, SIGTERM) mid-cell on the embedded
default, and Slurm killing a serving session (scancel during start-up and mid-cell, NODE_FAIL or a
requeue) on the test Slurm. Each asserts the typed records, that no process of the run is left
(found by the run's environment tag, and the Slurm job's id), that finished cells' records and raw
outputs are kept, and that the documented command completes the week afterwards."""

from __future__ import annotations

import pytest
import workflow_faults as wf


@pytest.mark.engine
def test_snakemake_interrupted_mid_cell_leaves_nothing_and_the_next_run_completes(tmp_path):
    if not wf.engine_ready():
        pytest.fail(f"the vLLM CPU engine is not installed at {wf.ENGINE_ENV} (run scripts/setup.sh)")
    ctrl_c, term = wf.run_snakemake_interrupted(tmp_path)
    for row in (ctrl_c, term):
        assert row["client_started"], row
        assert row["processes_left"] == 0, row
        assert row["results_lost"] == 0, row
        assert row["typed"], row
        assert row["first_cell"] == "ok", row  # rrinf, measured before the signal: record and raw.json kept
        assert row["snakemake_rc"] not in (0, None), row  # the run reports it was interrupted
    # Ctrl-C reaches the job too: the session types the cell it was measuring (interrupted.json beside
    # it), tears the server down and exits; Snakemake exits at once, leaving the job incomplete
    assert (ctrl_c["status"], ctrl_c["reason"]) == ("failed", "cancelled"), ctrl_c
    assert ctrl_c["interrupted_json"] and ctrl_c["exit_after_signal_s"] < 30, ctrl_c
    # SIGTERM to snakemake alone: it finishes the running job (Snakemake's graceful stop), starts no
    # other; the cell is measured, the previous attempt (Ctrl-C's) archived under attempts/
    assert (term["status"], term["reason"]) == ("ok", None), term
    # the documented command (profiles/local: rerun-incomplete) completes the week: table with numbers
    assert ctrl_c["recovered"], ctrl_c
    assert ctrl_c["recover_rc"] == 0


@pytest.mark.slurm
@pytest.mark.engine
def test_slurm_kills_of_a_serving_session_are_typed_tabulated_and_leave_no_server(tmp_path):
    """~4 min (a Slurm requeue is held ~2 min): outside the default run to keep CI under 50 min; run it
    with INFERLAB_FAULTS_SLURM_SESSION=1 (or benchmarks/bench_faults.py, which prints these rows)."""
    import os

    if os.environ.get("INFERLAB_FAULTS_SLURM_SESSION") != "1":
        pytest.skip("Slurm kills of a real serving session: set INFERLAB_FAULTS_SLURM_SESSION=1 (~4 min)")
    if not wf.slurm_ready():
        if os.environ.get("INFERLAB_REQUIRE_SLURM") == "1":
            pytest.fail("Slurm is not up (scripts/slurm-up.sh failed?)")
        pytest.skip("no test Slurm here: run scripts/slurm-up.sh as root")
    if not wf.engine_ready():
        pytest.fail(f"the vLLM CPU engine is not installed at {wf.ENGINE_ENV} (run scripts/setup.sh)")
    rows = {r["gpu"]: r for r in wf.run_slurm_session_faults(tmp_path)}
    for row in rows.values():
        assert row["reached"], row  # the fault met the session where intended
        # the job's step (the session, vllm serve, its client) is gone within seconds of the job's end
        assert row["info"]["gone"] and row["step_left"] == 0, row
        assert row["results_lost"] == 0, row
        assert row["typed"], row
        assert row["recovered"] and not row["next_remeasured"], row  # tabulated, nothing re-measured
    # scancel while the server starts: every cell typed cancelled from Slurm's state, shown as such
    up = rows["h100"]
    assert not up["server_was_ready"] and up["slurm_state"] == "CANCELLED", up
    assert up["records"] == {"rrinf": ("failed", "cancelled"), "rr1": ("failed", "cancelled")}, up
    assert up["typed_by"] == "reconcile" and up["table"] == {"inf": "CANCELLED", "1": "CANCELLED"}, up
    # scancel mid-cell: rr1 typed cancelled, rrinf (measured before) restored as measured, with numbers
    mid = rows["a100"]
    assert mid["records"] == {"rrinf": ("ok", None), "rr1": ("failed", "cancelled")}, mid
    assert mid["table"]["1"] == "CANCELLED" and wf._is_number(mid["table"]["inf"]), mid
    # NODE_FAIL (or a requeue): Slurm requeued the job; the first attempt is archived, both cells measured
    rq = rows["l40s"]
    assert rq["info"]["requeued"] and rq["slurm_state"] == "COMPLETED", rq
    assert "Duplicate" not in rq["node_after_run"], rq  # restarted only once the first attempt was over
    # nothing of any attempt outlives its job: the test Slurm tracks processes as a cluster does
    # (proctrack/cgroup; under linuxproc the plugin's batch-level snakemake, deadlocked in its own
    # SIGTERM handler, was left behind, reparented to init)
    assert all(rows[g]["processes_left"] == 0 for g in ("h100", "a100", "l40s")), rows
    assert rq["records"] == {"rrinf": ("ok", None), "rr1": ("ok", None)}, rq
    assert all(wf._is_number(v) for v in rq["table"].values()), rq


def test_reconcile_restores_a_cell_finished_before_slurm_ended_the_session(tmp_path, monkeypatch):
    """Unit (no Slurm): a session cancelled mid-cell kept a copy of its finished cell (``interrupted.json``,
    ``finished_before_signal``) and typed the interrupted one; Snakemake then deleted every cell.json
    of the failed job. ``reconcile`` restores the finished cell as measured and types the other from
    Slurm's state."""
    import json

    import yaml

    from inferlab import cells as il_cells
    from inferlab import config, io, matrix

    p = yaml.safe_load((wf.ROOT / "config" / "config.yaml").read_text())
    p.update(catalog=str(wf.ROOT / "config"), weeks=["week01"])
    p["overrides"] = {"week01": {"serving": {"engines": ["vllm"], "sweep": {"request_rate": ["inf", 1]}}}}
    cells = matrix.expand(config.load(p, base_dir=wf.ROOT))
    (key, specs), *_ = matrix.configurations(cells).items()
    results, logs = tmp_path / "results", tmp_path / "logs" / "slurm"
    log = logs / f"rule_{matrix.job_name(key)}" / "4242.log"
    log.parent.mkdir(parents=True)
    log.write_text("slurmstepd: error: *** JOB 4242 CANCELLED ***\n")
    slurm = {"slurm": {"SLURM_JOB_ID": "4242"}}
    done, cut = (results / s.path for s in specs)
    io.write_json(done / "raw.json", {"completed": 4})
    io.write_json(
        done / "interrupted.json",
        {**specs[0].to_dict(), "status": "ok", "reason": None, "provenance": slurm, "finished_before_signal": True},
    )
    io.write_json(
        cut / "interrupted.json",
        {
            **specs[1].to_dict(),
            "status": "failed",
            "reason": "cancelled",
            "detail": "got signal 15",
            "provenance": slurm,
        },
    )
    monkeypatch.setattr(il_cells, "slurm_state", lambda job: "CANCELLED" if job == "4242" else None)
    recs = il_cells.reconcile(results, logs, cells)
    assert len(recs) == 2
    a, b = (json.loads((d / "cell.json").read_text()) for d in (done, cut))
    assert (a["status"], a["reason"], a["typed_by"]) == ("ok", None, "reconcile")
    assert "finished_before_signal" not in a and "4242 ended CANCELLED" in a["restored"]
    assert (b["status"], b["reason"]) == ("failed", "cancelled") and "Slurm job 4242 ended CANCELLED" in b["detail"]
    # what the workflow prints for each (rules/common.smk type_killed_cells): it printed "typed None"
    # for the restored cell
    lines = sorted(il_cells.describe(r) for r in recs)
    assert any(" restored as ok (record kept by the job before Slurm job 4242 ended CANCELLED)" in x for x in lines)
    assert any(" typed cancelled from Slurm" in x for x in lines) and not any("None" in x for x in lines)
