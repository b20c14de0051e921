"""``edgeopt lab head | join | status | run``: the device lab on Ray (``edgeopt.lab``; docs/lab.md).

Imported by ``edgeopt.cli.main`` to add the subcommands, so only the standard library at module level; every
handler first checks that Ray is installed (exit 2 naming ``pip install edgeopt[lab]``).
"""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from edgeopt.cli.parsing import add_command_parser


def add_command(subparsers: Any) -> None:
    """Add ``edgeopt lab`` and its subcommands."""
    from edgeopt.cli.run_options import add_run_arguments

    lab = add_command_parser(
        subparsers, "lab", summary="the device lab: measure on every board of a fleet (Ray)",
        description="A Ray cluster whose nodes are your boards: 'lab head' on a workstation, 'lab join' on each "
        "board (it advertises the profiles the board is), 'lab run' measures every cell on a board of its profile "
        "into one run folder. Needs the extra: pip install edgeopt[lab]. Trusted networks only (docs/lab.md).",
        example="""
            edgeopt lab head --address 192.168.1.10:6379
            edgeopt lab join --address 192.168.1.10:6379            # on each board
            edgeopt lab run model.onnx --profile raspberry-pi-5 --address 192.168.1.10:6379 --out out/""")
    sub = lab.add_subparsers(dest="lab_command", metavar="COMMAND", required=True)

    p = add_command_parser(sub, "head", summary="start the lab's head node here (ray start --head)",
                           description="Start the head of the lab on HOST:PORT (never every interface). Nothing "
                           "of edgeopt's is measured on the head.",
                           example="edgeopt lab head --address 192.168.1.10:6379")
    p.add_argument("--address", required=True, metavar="HOST:PORT",
                   help="the address the head advertises (Ray 2.60 replaces a loopback address with this host's own "
                   "and its ports listen on every interface: firewall them, docs/lab.md)")
    p.add_argument("--dashboard", action="store_true", help="also start Ray's dashboard (default: none)")
    p.add_argument("--print-command", action="store_true", help="print the ray command instead of running it")
    p.set_defaults(handler=handle_lab_head)

    p = add_command_parser(sub, "join", summary="join this device to a lab as the profiles it is",
                           description="Find which profiles (shipped, ./hardware_profiles, EDGEOPT_PROFILE_PATH) "
                           "this host is, as 'edgeopt profiles check' does, and start a Ray worker node that offers "
                           "one slot per profile, one slot for the device and its host fingerprint.",
                           example="edgeopt lab join --address 192.168.1.10:6379 --profile raspberry-pi-5")
    p.add_argument("--address", required=True, metavar="HOST:PORT", help="the lab's head")
    p.add_argument("--profile", action="append", metavar="NAME",
                   help="only these profiles, repeatable (default: every profile this host is)")
    p.add_argument("--node-ip-address", metavar="IP", help="this device's address as the head reaches it "
                   "(default: Ray's guess)")
    p.add_argument("--print-command", action="store_true", help="print the ray command instead of running it")
    p.set_defaults(handler=handle_lab_join)

    p = add_command_parser(sub, "status", summary="the lab's nodes, their profiles, busy or idle",
                           description="List every node the head knows: id, address, alive, the profiles it "
                           "offers, its host fingerprint id and whether a measurement runs on it.",
                           example="edgeopt lab status --address 192.168.1.10:6379 --json")
    p.add_argument("--address", required=True, metavar="HOST:PORT", help="the lab's head")
    p.add_argument("--json", action="store_true", help="print the nodes as JSON (default: a table)")
    p.set_defaults(handler=handle_lab_status)

    p = add_command_parser(sub, "run", summary="edgeopt run, each cell measured on a lab node of its profile",
                           description="The pipeline of 'edgeopt run' (same options, same run folder); variants "
                           "are made here and every (variant, profile, runtime) cell is measured on a node that is "
                           "its profile, one at a time per device, by edgeopt's own isolated worker.",
                           example="edgeopt lab run model.onnx --profile raspberry-pi-5 --profile jetson-orin-nano "
                           "--address 192.168.1.10:6379 --out out/")
    add_run_arguments(p)
    p.add_argument("--address", required=True, metavar="HOST:PORT", help="the lab's head")
    p.add_argument("--wait-for-devices", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for a node of each profile before its rows are not-applicable "
                   "(default: %(default)s)")
    p.set_defaults(handler=handle_lab_run)


def handle_lab_head(args: argparse.Namespace) -> int:
    from edgeopt.lab.cluster import head_address, head_command, run_ray
    from edgeopt.lab.resources import require_ray

    head_address(args.address)  # a bad address or port is refused before anything of Ray's is needed
    require_ray()
    command = head_command(args.address, dashboard=args.dashboard)
    if args.print_command:
        print(shlex.join(command))
        return 0
    code = run_ray(command)
    if code == 0:
        print(f"lab head on {args.address}; on each device: edgeopt lab join --address {args.address}")
    return code


def handle_lab_join(args: argparse.Namespace) -> int:
    from edgeopt.lab.cluster import join_command, plan_join, run_ray
    from edgeopt.lab.node import cells_folder, sweep_stale_cells
    from edgeopt.lab.resources import require_ray

    require_ray()
    for name in sweep_stale_cells():
        print(f"removed {cells_folder() / name}: a cell of a node that died mid-cell")
    plan = plan_join(args.profile)
    print(f"host: {plan.fingerprint.summary()}")
    for name, why in plan.skipped:
        print(f"profile {name}: not this host ({why})")
    print(f"joining as: {', '.join(plan.profiles)}")
    command = join_command(args.address, plan, args.node_ip_address)
    if args.print_command:
        print(shlex.join(command))
        return 0
    return run_ray(command)


def handle_lab_status(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from edgeopt.lab.cluster import connect, lab_status

    ray = connect(args.address)
    try:
        nodes = lab_status(ray)
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps({"schema_version": 1, "kind": "lab-status", "nodes": [n.to_dict() for n in nodes]}, indent=2))
        return 0
    rows = [[n.node_id[:12], n.address, "head" if n.head else "device" if n.profiles else "-",
             "alive" if n.alive else "dead", ", ".join(n.profiles) or "-", n.host_id or "-",
             "-" if n.busy is None else "busy" if n.busy else "idle"] for n in nodes]
    print(tabulate(rows, headers=["node", "address", "role", "state", "profiles", "host", "slot"]))
    return 0


def handle_lab_run(args: argparse.Namespace) -> int:
    from edgeopt.cli.history import open_history, store_record
    from edgeopt.cli.run_options import run_config
    from edgeopt.history.collect import record_from_run_folder
    from edgeopt.lab.cluster import connect
    from edgeopt.lab.dispatch import LabMeasure
    from edgeopt.workflows.pipeline import run_pipeline

    history = open_history(args.history)
    ray = connect(args.address)
    try:
        config = run_config(args, measure=LabMeasure(wait_for_devices=args.wait_for_devices))
        result = run_pipeline(config)
    finally:
        ray.shutdown()
    summary = json.loads(result.summary_path.read_text())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for table in result.tables:  # its node column says which board measured each row
            print(table)
            print()
        for recommendation in summary.get("recommendations", []):
            print(recommendation["line"])
        print(summary["verdict"])
        print(f"reports: {result.summary_path}, {result.markdown_path}")
    store_record(history, lambda: record_from_run_folder(result.out_dir), str(result.out_dir))
    return result.exit_code
