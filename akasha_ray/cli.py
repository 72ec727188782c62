"""The `akasha` command: run a local Akasha and talk to it."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from akasha_ray import config
from akasha_ray.client import AkashaClient, AkashaHTTPError, default_url, read_jsonl, wait_healthy
from akasha_ray.errors import AkashaError

DEMO_SEED = 7


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (AkashaError, AkashaHTTPError, ValueError, TimeoutError) as exc:
        print(f"akasha: {exc}", file=sys.stderr)
        return 1


def up(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    from actors import supervisor
    from akasha_ray import local_cluster, private_files
    from serve_apps.app import bind, http_options

    overrides = {"serve": {"port": args.port}} if args.port else {}
    settings = config.load(**overrides)
    private_files.restrict_umask()  # what this process writes in data_dir is 0600
    private_files.private_dir(settings.data_dir)
    private_files.tighten(settings.data_dir)  # files an earlier run left with another umask
    local_cluster.connect(settings, say=print)
    supervisor.check_manifest(settings)
    admin = settings.admin_key.get_secret_value() if settings.admin_key else None
    generated = ray.get(supervisor.keys(settings).ensure_admin.remote(admin))
    serve.start(http_options=http_options(settings))  # its request timeout too
    serve.run(bind(settings), name="akasha", route_prefix="/")
    # A pass killed mid-way left batches in two tiers: finish them before saying we are up.
    recovered = ray.get(supervisor.migrator(settings).recover.remote())
    if count := sum(hop["recovered"] for hop in recovered.values()):
        print(f"Finished {count} memories an interrupted migration pass had left in two tiers.")
    url = default_url(settings)
    wait_healthy(url)
    if args.demo:
        _load_demo(url, args.demo_size)
    print(f"Akasha is serving on {url} (API docs: {url}/docs)")
    if generated:
        print(f"Admin key (shown once): {generated}")
    if admin is None:
        print(f"The admin key is in {settings.data_dir / 'admin.key'}")
    return 0


def _load_demo(url: str, size: int) -> None:
    from akasha_ray import demo

    with AkashaClient(url) as client:
        if any(c.get("memories") for c in client.health()["components"].values()):
            print("Demo data skipped: the store already holds memories.")
            return
        # Demo timestamps end at today's midnight, so re-running on one day gives the same ids.
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        records = demo.generate(size, seed=DEMO_SEED, now=today)
        client.ingest(records, total=len(records))


def down(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    from actors import supervisor
    from akasha_ray import local_cluster

    settings = config.load()
    try:
        local_cluster.connect(settings, start=False)
    except ConnectionError as exc:
        # A head `up` started may be half dead (its GCS killed): stop what is left of it.
        stopped = local_cluster.stop_if_ours(settings)
        print(
            f"No Ray cluster answers ({exc})"
            + ("; stopped what was left of ours." if stopped else ".")
        )
        return 0
    serve.delete("akasha")
    unflushed = None
    for name in supervisor.actor_names(settings):
        try:
            handle = ray.get_actor(name, namespace=settings.namespace)
        except ValueError:
            continue
        if name.startswith("hot-"):
            ray.get(handle.close.remote())  # checkpoint before the process goes
        elif name == "timeseries":
            try:
                ray.get(handle.shutdown.remote())  # flush every accepted point first
            except ray.exceptions.RayTaskError as exc:
                unflushed = exc.cause  # the store refuses them: keep the actor, which retries
                if not args.force:
                    continue
        elif name in ("graph", "warm", "cold"):
            ray.get(handle.close.remote())
        ray.kill(handle, no_restart=True)
    if unflushed is not None and not args.force:
        print(
            f"Akasha stopped, but the metrics store refuses the points still waiting "
            f"({unflushed}); the timeseries actor and the Ray cluster keep running and retrying. "
            "Run `akasha down` again once the store is back, or `akasha down --force` to drop "
            "those points."
        )
        return 1
    ray.shutdown()
    stopped = local_cluster.stop_if_ours(settings)
    print("Akasha stopped" + (" and the local Ray cluster shut down." if stopped else "."))
    return 0


def migrate(args: argparse.Namespace) -> int:
    import json

    import ray

    from actors import supervisor
    from akasha_ray import local_cluster

    settings = config.load()
    local_cluster.connect(settings, start=False)
    settings = supervisor.adopt_running(settings)
    report = ray.get(supervisor.migrator(settings).migrate.remote(args.batch_size))
    print(json.dumps(report, indent=1))
    return 0


def status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        health = client.health()
        print(f"{client.url}: {health['status']}")
        for name, component in health["components"].items():
            details = ", ".join(f"{k}={v}" for k, v in component.items() if k != "status")
            print(f"  {name:10} {component['status']:8} {details}")
    return 0 if health["status"] == "ok" else 1


def ingest(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    with open(path) as lines:
        total = sum(1 for line in lines if line.strip())
    with _client(args) as client:
        ids = client.ingest(read_jsonl(path), batch_size=args.batch_size, total=total)
    print(f"ingested {len(ids)} memories")
    return 0


def search(args: argparse.Namespace) -> int:
    with _client(args) as client:
        body = client.search(
            args.text,
            system_ids=args.system,
            start=_since(args.since),
            limit=args.limit,
            mode=args.mode,
        )
    for hit in body["results"]:
        # The score the results are ranked by (cosine, BM25 or fused: see --mode).
        text = hit["content"].replace("\n", " ")
        print(f"{hit['score']:.3f}  {hit['system_id']:20} {hit['created_at'][:19]}  {text}")
    if not body["results"]:
        print("no results")
    return 0


def keys_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.create_key(args.system, args.scope))
    return 0


def keys_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        keys = client.list_keys()
    print(f"{'KEY_ID':21} {'STATE':7} {'SCOPES':10} {'CREATED':20} {'EXPIRES':20} SYSTEMS")
    for key in keys:
        state = "revoked" if key["revoked"] else "expired" if key["expired"] else "active"
        expires = (key["expires_at"] or "never")[:19]
        print(
            f"{key['key_id']:21} {state:7} {','.join(key['scopes']):10} "
            f"{key['created_at'][:19]:20} {expires:20} {','.join(key['system_ids']) or '*'}"
        )
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.revoke_key(args.key_id)
    print(f"revoked {args.key_id}")
    return 0


def dr_status(args: argparse.Namespace) -> int:
    import json

    with _client(args) as client:
        report = client.dr_status()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0 if report["status"] == "ok" else 1
    if not report.get("enabled"):
        print(f"{client.url}: DR is off (dr.region is not set)")
        return 0
    writable = "takes writes" if report["writable"] else "refuses writes"
    print(
        f"{client.url}: region {report['region']} ({report['role']}, {writable}), "
        f"epoch {report['epoch']}, primary {report['primary']}, mode {report['mode']}: "
        f"{report['status']}"
    )
    print(f"  logged  {_lsns(report.get('logged'))}")
    for region in report["regions"]:
        print(
            f"  {region['name']:12} {region.get('role') or '?':9} {region.get('duty') or '?':5} "
            f"lag {region.get('lag_changes')} changes, {region.get('lag_s', 0):.1f} s"
        )
        for key in ("shipped", "applied", "received"):
            if key in region:
                print(f"    {key:8} {_lsns(region[key])}")
        if region.get("last_error"):
            print(f"    error: {region['last_error']['message']}")
    if report.get("deposed"):
        print(f"  deposed: {report['deposed']} (run `akasha dr rejoin`)")
    return 0 if report["status"] == "ok" else 1


def dr_promote(args: argparse.Namespace) -> int:
    import json

    with _client(args) as client:
        mode = "forced" if args.force else "planned"
        print(json.dumps(client.promote(args.region, mode=mode, timeout_s=args.timeout), indent=1))
    return 0


def dr_rejoin(args: argparse.Namespace) -> int:
    import json

    with _client(args) as client:
        print(json.dumps(client.rejoin(), indent=1))
    return 0


def _lsns(versions: dict[str, int] | None) -> str:
    return ", ".join(f"{s}={n}" for s, n in sorted((versions or {}).items())) or "-"


def _since(value: str | None) -> datetime | None:
    """'7d', '12h', '30m' before now, or an RFC 3339 time."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([dhm])", value)
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match[2]]
        return datetime.now(UTC) - timedelta(**{unit: int(match[1])})
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("--since needs a time zone offset, e.g. 2026-01-01T00:00:00Z, or 7d")
    return moment


def _client(args: argparse.Namespace) -> AkashaClient:
    return AkashaClient(url=args.url, key=args.key)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="akasha", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run, help_text: str, *, remote: bool = True) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(run=run)
        if remote:
            cmd.add_argument("--url", help="Akasha URL (default: AKASHA_URL or the config)")
            cmd.add_argument("--key", help="API key (default: AKASHA_API_KEY or the admin key)")
        return cmd

    cmd = command(
        "up", up, "start Akasha on a local Ray cluster and wait until healthy", remote=False
    )
    cmd.add_argument("--port", type=int, help="HTTP port (default 8000)")
    cmd.add_argument("--demo", action="store_true", help="load demo conversations")
    cmd.add_argument("--demo-size", type=int, default=2000, help="demo memories (default 2000)")
    cmd = command("down", down, "stop Akasha (and the Ray cluster `up` started)", remote=False)
    cmd.add_argument(
        "--force", action="store_true", help="stop even if accepted metric points cannot be written"
    )
    command("status", status, "show the health of every component")
    cmd = command("migrate", migrate, "move aged memories: hot -> warm -> cold", remote=False)
    cmd.add_argument("--batch-size", type=int, default=5000)
    cmd = command("ingest", ingest, "ingest a JSONL file of memories over HTTP")
    cmd.add_argument("file")
    cmd.add_argument("--batch-size", type=int, default=500)
    cmd = command("search", search, "semantic search")
    cmd.add_argument("text")
    cmd.add_argument("--system", action="append", help="limit to a system (repeatable)")
    cmd.add_argument("--since", help="7d, 12h, 30m or an RFC 3339 time")
    cmd.add_argument("--limit", type=int, default=10)
    cmd.add_argument(
        "--mode",
        choices=["vector", "keyword", "hybrid"],
        help="ranking (default hybrid: cosine and BM25 fused); the score printed is its score",
    )
    dr = sub.add_parser("dr", help="regions: status, promotion").add_subparsers(required=True)
    cmd = dr.add_parser("status", help="roles, epoch, LSNs, lag and errors of every region")
    cmd.set_defaults(run=dr_status)
    cmd.add_argument("--json", action="store_true", help="the whole status document")
    cmd = dr.add_parser("promote", help="make a region the primary (admin)")
    cmd.set_defaults(run=dr_promote)
    cmd.add_argument("region")
    how = cmd.add_mutually_exclusive_group()
    how.add_argument("--planned", action="store_true", help="switchover, nothing lost (default)")
    how.add_argument("--force", action="store_true", help="failover: the primary is gone")
    cmd.add_argument("--timeout", type=float, help="seconds to wait for the region to catch up")
    cmd = dr.add_parser(
        "rejoin",
        help="make a deposed old primary, restarted on an empty data dir, a secondary again",
    )
    cmd.set_defaults(run=dr_rejoin)
    for cmd in (dr.choices["status"], dr.choices["promote"], dr.choices["rejoin"]):
        cmd.add_argument("--url", help="Akasha URL(s), comma-separated (default: AKASHA_URL)")
        cmd.add_argument("--key")
    from akasha_ray.replication import drill

    drill.add_command(dr)  # `akasha dr drill` (cluster/runbook.md)
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(required=True)
    cmd = keys.add_parser("create", help="mint a key scoped to systems")
    cmd.set_defaults(run=keys_create)
    cmd.add_argument("--url")
    cmd.add_argument("--key")
    cmd.add_argument("--system", action="append", required=True)
    cmd.add_argument("--scope", action="append", choices=["read", "write"], required=True)
    cmd = keys.add_parser("list", help="every key: id, state, scopes, dates, systems")
    cmd.set_defaults(run=keys_list)
    cmd.add_argument("--url")
    cmd.add_argument("--key")
    cmd = keys.add_parser("revoke", help="revoke a key by its id (from `keys list`)")
    cmd.set_defaults(run=keys_revoke)
    cmd.add_argument("key_id")
    cmd.add_argument("--url")
    cmd.add_argument("--key")
    from akasha_ray.replication import commands as dr_commands  # backup, restore, export, import

    dr_commands.add_parsers(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
