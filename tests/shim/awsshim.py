#!/usr/bin/env python3
"""A test-side shim in front of moto, so the agent can speak real AWS protocols to it.

One process: moto (ThreadedMotoServer) plus three small HTTP servers, all on 127.0.0.1:

- the AWS front (use it as AWS_ENDPOINT_URL): forwards everything to moto, except
  - CloudWatch rpc-v2-cbor (`POST /service/GraniteServiceVersion20100801/operation/<Op>`,
    header `smithy-protocol: rpc-v2-cbor`), which moto does not understand (moto #9195):
    PutMetricData is translated to moto's query protocol and answered in rpc-v2-cbor;
  - Auto Scaling `CompleteLifecycleAction` and `RecordLifecycleActionHeartbeat`, which moto
    answers with HTTP 500: answered here (after checking that the group and hook exist in
    moto) and recorded for the tests;
  - Route53 `ChangeResourceRecordSets`: moto accepts a DELETE whose values do not match the
    current record (it checks its change journal, not the record), and rejects a CREATE that
    follows a DELETE of the same record in one batch. Real Route53 validates the batch as a
    whole: the shim rejects a mismatched DELETE (or a CREATE of an existing record) with
    InvalidChangeBatch, and hands moto such a DELETE+CREATE as the equivalent DELETE+UPSERT.
  - CloudFormation `CreateChangeSet`, `CreateStack` and `UpdateStack`: a `TemplateURL` is read
    from moto's S3 (moto would take the endpoint's host for the bucket), and the template goes to
    moto as a body without its custom resources, which moto would run as Lambda functions in
    Docker (the cloud twin runs their code itself).
  - a stack update: moto drops a modified resource whose model cannot update (a log group);
    the shim keeps it as it was, and an SSM-typed parameter kept with UsePreviousValue, which moto
    would look up again by its resolved value (`keep_resources_moto_cannot_update`).
  - CloudFormation `DescribeChangeSet`: moto lists a resource as modified only when its template
    text changed (not when a parameter it uses did), never says whether a change replaces it,
    and ignores Conditions. For the resource types in cfntemplate.CREATE_ONLY (the EFS file
    systems, mount targets and access points, the task definition) the change set says what
    CloudFormation would: Add, Remove, or Modify with Replacement True when a create-only property
    resolves to another value, and the resources that name a replaced one as Modify too
    (`change_sets_say_what_they_replace`);
  - a stack update replaces what CloudFormation replaces: moto keeps a resource (and its id)
    whatever changed; here a resource whose create-only property changes, or that names a
    replaced one in a create-only property, is made anew, what names it elsewhere is updated to
    the replacement, the old one is deleted unless UpdateReplacePolicy is Retain, a Condition that
    turns creates or deletes, and a group follows its launch template's latest version
    (`updates_replace_what_cloudformation_replaces`);
  - CloudFormation `ExecuteChangeSet` of a create or an update: moto applies the resources but
    keeps the stack's old outputs (none, for a create) and parsed template; here they become the new ones, as an
    UpdateStack does in moto and as CloudFormation does (`executed_change_sets_update_the_stack`);
  - CloudFormation `Ref` of an EFS access point, which moto resolves to its Python object's repr
    (`access_points_have_their_id`);
  - CloudFormation `DeleteStack`: moto removes the stack, then answers DependencyViolation for
    its VPC; once the stack is gone, the shim answers the success CloudFormation would.
- the IMDS front (use it as AWS_EC2_METADATA_SERVICE_ENDPOINT): IMDSv2 with values the test
  sets (moto's own IMDS omits the token TTL header and has fixed values);
- the control port: `/_shim/...`, which never goes down.

On start it prints one JSON line to stdout: {"aws": URL, "imds": URL, "control": URL,
"moto": URL}. The control API:

  GET  /_shim/health                  -> {"ok": true}
  POST /_shim/imds        {...}       merge IMDS values (null removes one); keys:
         instance-id, region, availability-zone, public-ipv4, ipv6,
         target-lifecycle-state, spot-instance-action (a JSON object or string),
         role (the instance profile role name; credentials are served for it)
         With "source": ADDRESS, the values are those served to callers from that
         address only (one per cloud-twin instance); {"source": A, "forget": true} drops them.
  GET  /_shim/imds                    -> the current values
  POST /_shim/warm {"group", "instance_id", "state"}
         lists the instance in DescribeWarmPool's Instances with that LifecycleState (moto keeps
         the pool's configuration but no instances); without "state", stops listing it.
  POST /_shim/terminating {"group", "instance_id", "state"}
         lists the instance in DescribeAutoScalingGroups with that LifecycleState (for
         example Terminating:Wait) after moto has removed it; without "state", stops listing it.
  GET  /_shim/lifecycle-actions       -> [{"action", "hook", "group", "instance_id",
                                           "result", "time"}]  (time: unix seconds)
  GET  /_shim/requests                -> [{"op", "time", "served"}] every AWS front request
  POST /_shim/outage {"seconds": S, "mode": "refuse"|"hang", "imds": bool}
         refuse: the AWS front's listening socket is closed (connection refused) and open
                 connections are reset; hang: connections are accepted, never answered and
                 reset when the outage ends. imds: the IMDS front goes down too.
         Without "seconds" the outage lasts until POST /_shim/outage/stop.
  POST /_shim/outage/stop
  GET  /_shim/outage                  -> {"active": bool, "mode": ..., "imds": bool}
  POST /_shim/deny {"policy": {"Statement": [{"Effect": "Deny", "Action": [...]}]}}
         an identity policy's explicit denies: every AWS call whose IAM action (the signing
         service's prefix and the operation, "autoscaling:SetDesiredCapacity") matches one of
         the Deny statements' Action patterns (* and ?, case-insensitive) is answered 403
         AccessDenied in the service's own error format, as AWS answers an explicit deny.
         moto itself enforces IAM only for requests signed by its own IAM users, which the
         agent's (and the shim's translated) requests are not. {} or {"policy": null} clears.
         With "code" and "status" (for example "ServiceUnavailable", 503) the matching calls
         fail with that error instead: a service failing for those calls only.
  GET  /_shim/deny                    -> {"policy": ..., "denied": [{"action", "time"}]}
  POST /_shim/ctl/<name>  {...}       runs awsctl.<name>(**args) against moto (setup and
                                      read-back helpers, see awsctl.py) -> its JSON result
  POST /_shim/backup {"vault", "resource_arn", "created", "snapshot", "efs_root"}
                                      a recovery point (AWS Backup's daily job, played by the
                                      twin) -> {"RecoveryPointArn"}; backup.py answers AWS
                                      Backup's list, restore and describe calls from them
  POST /moto-api/reset is forwarded to moto by the AWS front like everything else.

Run it with the tests' venv: tests/.venv/bin/python tests/shim/awsshim.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import gzip
import http.client
import json
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import cbor2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import awsctl  # noqa: E402
import backup  # noqa: E402
import cfntemplate  # noqa: E402

HOST = "127.0.0.1"  # main() may change it (--host), before any front starts
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
}


class State:
    """Everything the control API reads and writes, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.imds: dict[str, Any] = {}
        # IMDS values by the caller's address: each instance of the cloud twin sees its own.
        self.imds_by_source: dict[str, dict[str, Any]] = {}
        # Instances that moto already removed but that the twin holds in Terminating:Wait:
        # (group, instance id) -> {"state": ..., "zone": ..., "type": ...}.
        self.terminating: dict[tuple[str, str], dict[str, str]] = {}
        # Instances the twin holds in a warm pool: (group, instance id) -> lifecycle state.
        self.warm: dict[tuple[str, str], str] = {}
        self.tokens: dict[str, float] = {}
        self.lifecycle_actions: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.outage_until: float | None = None  # inf: until stopped
        self.outage_mode = "refuse"
        self.outage_imds = False
        self.moto_url = ""
        # /_shim/deny: the Deny statements' action patterns, and the calls they denied.
        self.deny_policy: dict[str, Any] | None = None
        self.deny_patterns: list[str] = []
        self.deny_error: tuple[str, int] = ("AccessDenied", 403)
        self.denied: list[dict[str, Any]] = []

    def outage_active(self) -> bool:
        with self.lock:
            return self.outage_until is not None and time.time() < self.outage_until


STATE = State()
# AWS Backup's recovery points and restore jobs (moto has neither): backup.py.
BACKUP = backup.Backup()


def reset_socket(sock: socket.socket) -> None:
    """Closes a connection with a TCP RST, the way a dead host or a middlebox would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Front:
    """One listening HTTP server that can be taken down (refuse) and brought back."""

    def __init__(self, name: str, handler: type[BaseHTTPRequestHandler], port: int = 0):
        self.name = name
        self.handler = handler
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        self.handler.front = self  # type: ignore[attr-defined]

    def start(self) -> None:
        server = ThreadingHTTPServer((HOST, self.port), self.handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stops listening (connection refused) and resets every open connection."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        self.reset_all()

    def reset_all(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
            self.conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            reset_socket(c)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    front: Front
    # Whether this front is affected by an outage.
    down_in_outage: Callable[[], bool] = staticmethod(lambda: False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if os.environ.get("AWSSHIM_VERBOSE"):
            sys.stderr.write(f"[{self.front.name}] {format % args}\n")

    def setup(self) -> None:
        super().setup()
        with self.front.conns_lock:
            self.front.conns.add(self.connection)

    def finish(self) -> None:
        with self.front.conns_lock:
            self.front.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, OSError):
            self.close_connection = True

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            data = gzip.decompress(data)
        return data

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status: int, value: Any) -> None:
        self.reply(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def outage_gate(self) -> bool:
        """True when the request must not be served: the connection is held (hang) or reset."""
        if not (self.down_in_outage() and STATE.outage_active()):
            return False
        with STATE.lock:
            mode = STATE.outage_mode
        if mode == "hang":
            while STATE.outage_active():
                time.sleep(0.05)
        self.close_connection = True
        reset_socket(self.connection)
        return True

    def do_GET(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_PUT(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def do_HEAD(self) -> None:
        self.dispatch()

    def dispatch(self) -> None:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------
# The AWS front
# ------------------------------------------------------------------------------------------


def xml_error(code: str, message: str, namespace: str) -> bytes:
    rid = uuid.uuid4()
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="{namespace}"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{xml_escape(message)}</Message>"
        f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
    ).encode()


def xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


AUTOSCALING_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
ROUTE53_NS = "https://route53.amazonaws.com/doc/2013-04-01/"


class AwsHandler(Handler):
    down_in_outage = staticmethod(lambda: True)

    def dispatch(self) -> None:
        if self.outage_gate():
            return
        body = self.body()
        op = self.operation(body)
        with STATE.lock:
            STATE.requests.append({"op": op, "time": time.time(), "path": self.path.split("?")[0]})
        if self.deny_gate(op):
            return
        try:
            if BACKUP.handles(self.command, self.path.split("?")[0], self.headers.get("Authorization", "")):
                status, value = BACKUP.call(self.command, self.path, json.loads(body) if body.strip() else {})
                self.reply_json(status, value)
            elif self.headers.get("smithy-protocol", "").lower() == "rpc-v2-cbor":
                self.cbor(op, body)
            elif op in ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat"):
                self.lifecycle(op, body)
            elif op == "ChangeResourceRecordSets" and not self.route53_guard(body):
                return
            elif op in ("CreateChangeSet", "CreateStack", "UpdateStack") and "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
                self.forward(self.cfn_template(body))
            elif op == "DeleteStack":
                self.delete_stack(body)
            elif op == "DescribeWarmPool":
                status, rheaders, rbody = self.to_moto(self.command, self.path, body)
                if status == 200:
                    form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
                    rbody = with_warm_instances(rbody, form.get("AutoScalingGroupName", ""))
                self.reply(status, rbody, rheaders)
            elif op == "DescribeAutoScalingGroups" and STATE.terminating:
                status, rheaders, rbody = self.to_moto(self.command, self.path, body)
                if status == 200:
                    rbody = with_terminating(rbody)
                self.reply(status, rbody, rheaders)
            else:
                self.forward(body)
        except Exception as e:  # a shim bug must show up as a 500, not a hang
            sys.stderr.write(f"awsshim: {op}: {e!r}\n")
            self.reply(500, f"awsshim error: {e!r}".encode(), {"Content-Type": "text/plain"})

    def deny_gate(self, op: str) -> bool:
        """Answers 403 AccessDenied when /_shim/deny's policy denies this call. True when
        it has answered."""
        with STATE.lock:
            patterns = list(STATE.deny_patterns)
            code, status = STATE.deny_error
        if not patterns:
            return False
        auth = self.headers.get("Authorization", "")
        scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request", auth)
        if not scope:
            return False
        prefix = {"monitoring": "cloudwatch"}.get(scope.group(1), scope.group(1))
        name = op.split(":", 1)[-1] if op.startswith("Route53:") else op
        action = f"{prefix}:{name}"
        if not any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns):
            return False
        with STATE.lock:
            STATE.denied.append({"action": action, "time": time.time()})
        message = (
            "User: arn:aws:sts::123456789012:assumed-role/container-manager-test/i-shim is not "
            f"authorized to perform: {action} with an explicit deny in an identity-based policy"
        ) if code == "AccessDenied" else f"{code} (the shim fails {action})"
        if self.headers.get("smithy-protocol", "").lower() == "rpc-v2-cbor":
            self.cbor_error(status, code, message)
        else:
            namespace = {"route53": ROUTE53_NS, "autoscaling": AUTOSCALING_NS}.get(
                prefix, f"http://{prefix}.amazonaws.com/doc/"
            )
            self.reply(status, xml_error(code, message, namespace), {"Content-Type": "text/xml"})
        return True

    def operation(self, body: bytes) -> str:
        path = self.path.split("?")[0]
        if path.startswith("/service/") and "/operation/" in path:
            return path.rsplit("/", 1)[-1]
        if self.command == "POST" and "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
            form = urllib.parse.parse_qs(body.decode(errors="replace"))
            return form.get("Action", ["?"])[0]
        target = self.headers.get("X-Amz-Target")
        if target:
            return target.rsplit(".", 1)[-1]
        if path.startswith("/2013-04-01/"):
            if path.endswith("/rrset") or path.endswith("/rrset/"):
                return "ChangeResourceRecordSets" if self.command == "POST" else "ListResourceRecordSets"
            if "/change/" in path:
                return "GetChange"
            return "Route53:" + self.command
        return f"{self.command} {path}"

    def delete_stack(self, body: bytes) -> None:
        """moto deletes the stack's resources, then fails on the VPC with DependencyViolation
        although the stack is gone (FACTS.md); CloudFormation deletes the VPC last and succeeds.
        Such an answer becomes the success it is; any other error passes through."""
        status, rheaders, rbody = self.to_moto(self.command, self.path, body)
        if status != 200 and b"DependencyViolation" in rbody:
            name = urllib.parse.parse_qs(body.decode()).get("StackName", [""])[0]
            cf = awsctl._client(STATE.moto_url, "cloudformation")  # noqa: SLF001
            try:
                gone = cf.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
            except Exception:  # noqa: BLE001 - a ValidationError: no such stack any more
                gone = True
            if gone:
                ns = "http://cloudformation.amazonaws.com/doc/2010-05-15/"
                rbody = (f'<DeleteStackResponse xmlns="{ns}"><ResponseMetadata><RequestId>{uuid.uuid4()}'
                         "</RequestId></ResponseMetadata></DeleteStackResponse>").encode()
                status, rheaders = 200, {"Content-Type": "text/xml"}
        self.reply(status, rbody, rheaders)

    def cfn_template(self, body: bytes) -> bytes:
        """A template as CloudFormation reads it: from TemplateURL (moto takes the endpoint's
        host for a bucket name, and the AWS CLI names the template by the S3 endpoint it was
        given), and without the custom resources, which moto would run as Lambda functions in
        Docker; the cloud twin runs their code itself (tests/twin/stack.py)."""
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        if "TemplateURL" in form:
            bucket, _, key = urllib.parse.urlparse(form.pop("TemplateURL")[0]).path.lstrip("/").partition("/")
            s3 = awsctl._client(STATE.moto_url, "s3")  # noqa: SLF001 - the shim's own helper module
            text = s3.get_object(Bucket=bucket, Key=urllib.parse.unquote(key))["Body"].read()
        elif "TemplateBody" in form:
            text = form["TemplateBody"][0].encode()
        else:
            return body
        form["TemplateBody"] = [cfntemplate.deployable(cfntemplate.parse(text.decode()))]
        return urllib.parse.urlencode(form, doseq=True).encode()

    def forward(self, body: bytes, path: str | None = None, headers: dict[str, str] | None = None) -> None:
        status, rheaders, rbody = self.to_moto(self.command, path or self.path, body, headers)
        self.reply(status, rbody, rheaders)

    def to_moto(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if headers is None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"}
        headers = dict(headers)
        headers["Content-Length"] = str(len(body))
        u = urllib.parse.urlparse(STATE.moto_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            rheaders = {k: v for k, v in r.getheaders() if k.lower() not in HOP_BY_HOP}
            return r.status, rheaders, data
        finally:
            conn.close()

    # -- CloudWatch rpc-v2-cbor ---------------------------------------------------------------

    def cbor(self, op: str, body: bytes) -> None:
        headers = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}
        req = cbor2.loads(body) if body else {}
        if op != "PutMetricData":
            self.cbor_error(400, "UnknownOperationException", f"the shim translates only PutMetricData, not {op}")
            return
        form = put_metric_data_form(req)
        qheaders = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": self.headers.get("Authorization", ""),
            "X-Amz-Date": self.headers.get("X-Amz-Date", ""),
            "Host": self.headers.get("Host", ""),
        }
        status, _, rbody = self.to_moto("POST", "/", urllib.parse.urlencode(form).encode(), qheaders)
        if status == 200:
            self.reply(200, cbor2.dumps({}), headers)
            return
        code, message = parse_xml_error(rbody)
        self.cbor_error(status, code, message)

    def cbor_error(self, status: int, code: str, message: str) -> None:
        body = cbor2.dumps({"__type": f"com.amazonaws.cloudwatch#{code}", "message": message})
        self.reply(
            status,
            body,
            {
                "Content-Type": "application/cbor",
                "smithy-protocol": "rpc-v2-cbor",
                "x-amzn-query-error": f"{code};Sender",
            },
        )

    # -- Auto Scaling lifecycle actions ---------------------------------------------------------

    def lifecycle(self, op: str, body: bytes) -> None:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        group = form.get("AutoScalingGroupName", "")
        hook = form.get("LifecycleHookName", "")
        instance = form.get("InstanceId", "")
        token = form.get("LifecycleActionToken", "")
        result = form.get("LifecycleActionResult")
        problem = None
        if not group or not hook:
            problem = "AutoScalingGroupName and LifecycleHookName are required"
        elif not instance and not token:
            problem = "Either InstanceId or LifecycleActionToken is required"
        elif op == "CompleteLifecycleAction" and result not in ("CONTINUE", "ABANDON"):
            problem = f"LifecycleActionResult must be CONTINUE or ABANDON, not {result!r}"
        else:
            try:
                hooks = awsctl.lifecycle_hooks(STATE.moto_url, group)
            except Exception as e:  # the group does not exist
                hooks = None
                problem = f"Group {group} not found: {e}"
            if hooks is not None and hook not in hooks:
                problem = f"No Lifecycle Hook found with name {hook} for group {group}"
        if problem:
            self.reply(400, xml_error("ValidationError", problem, AUTOSCALING_NS), {"Content-Type": "text/xml"})
            return
        with STATE.lock:
            STATE.lifecycle_actions.append(
                {
                    "action": op,
                    "hook": hook,
                    "group": group,
                    "instance_id": instance,
                    "result": result,
                    "time": time.time(),
                }
            )
        rid = uuid.uuid4()
        xml = (
            f'<{op}Response xmlns="{AUTOSCALING_NS}"><{op}Result/>'
            f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{op}Response>"
        )
        self.reply(200, xml.encode(), {"Content-Type": "text/xml"})

    # -- Route53 guarded DELETE ----------------------------------------------------------------

    def route53_guard(self, body: bytes) -> bool:
        """Validates a change batch the way Route53 does, then forwards it. Returns False
        when it has answered (always, since it either rejects or forwards)."""
        zone = self.path.split("?")[0].split("/hostedzone/")[1].split("/")[0]
        root = ET.fromstring(body)
        ns = {"r": ROUTE53_NS}
        deleted: set[tuple[str, str]] = set()
        for change in root.iterfind(".//r:Change", ns):
            action = change.findtext("r:Action", "", ns)
            rr = change.find("r:ResourceRecordSet", ns)
            if rr is None or action not in ("DELETE", "CREATE"):
                continue
            name = rr.findtext("r:Name", "", ns).rstrip(".").lower() + "."
            rtype = rr.findtext("r:Type", "", ns)
            current = awsctl.record(STATE.moto_url, zone, name, rtype)
            if action == "DELETE":
                # Route53 deletes only an exact match (moto checks its change journal instead).
                ttl = rr.findtext("r:TTL", None, ns)
                values = sorted(v.text or "" for v in rr.iterfind("r:ResourceRecords/r:ResourceRecord/r:Value", ns))
                if current is None:
                    message = f"[Tried to delete resource record set [name='{name}', type='{rtype}'] but it was not found]"
                elif str(current["ttl"]) != str(ttl) or sorted(current["values"]) != values:
                    message = (
                        f"[Tried to delete resource record set [name='{name}', type='{rtype}'] "
                        "but the values provided do not match the current values]"
                    )
                else:
                    deleted.add((name, rtype))
                    continue
            else:
                if current is None or (name, rtype) in deleted:
                    # Route53 applies a batch as a whole, so a CREATE after a DELETE of the same
                    # record is valid. moto checks the CREATE against the state before the
                    # DELETE, so it gets the equivalent UPSERT.
                    if (name, rtype) in deleted:
                        change.find("r:Action", ns).text = "UPSERT"  # type: ignore[union-attr]
                    continue
                message = (
                    f"[Tried to create resource record set [name='{name}', type='{rtype}'] "
                    "but it already exists]"
                )
            self.reply(400, xml_error("InvalidChangeBatch", message, ROUTE53_NS), {"Content-Type": "text/xml"})
            return False
        if deleted:
            ET.register_namespace("", ROUTE53_NS)
            body = b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root)
        self.forward(body)
        return False


def with_warm_instances(body: bytes, group: str) -> bytes:
    """Fills in the Instances of a DescribeWarmPool answer (moto always answers none) with the
    instances the twin holds in the pool and their lifecycle states."""
    ET.register_namespace("", AUTOSCALING_NS)
    root = ET.fromstring(body)
    result = next(root.iter(f"{{{AUTOSCALING_NS}}}DescribeWarmPoolResult"), None)
    if result is None:
        return body
    instances = result.find(f"{{{AUTOSCALING_NS}}}Instances")
    if instances is None:
        instances = ET.SubElement(result, f"{{{AUTOSCALING_NS}}}Instances")
    with STATE.lock:
        held = {iid: state for (g, iid), state in STATE.warm.items() if g == group}
    for iid, state in sorted(held.items()):
        member = ET.SubElement(instances, f"{{{AUTOSCALING_NS}}}member")
        for tag, value in (("InstanceId", iid), ("InstanceType", "t3a.medium"), ("AvailabilityZone", "us-east-1a"),
                           ("LifecycleState", state), ("HealthStatus", "Healthy")):
            ET.SubElement(member, f"{{{AUTOSCALING_NS}}}{tag}").text = value
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root)


def with_terminating(body: bytes) -> bytes:
    """Adds the instances the twin holds in Terminating:Wait to a DescribeAutoScalingGroups
    answer: moto removes an instance at once on scale-in, real Auto Scaling keeps listing it
    in a Terminating state until its lifecycle hooks complete."""
    ns = {"a": AUTOSCALING_NS}
    ET.register_namespace("", AUTOSCALING_NS)
    root = ET.fromstring(body)
    with STATE.lock:
        held = dict(STATE.terminating)
    for group in root.iterfind(".//a:AutoScalingGroups/a:member", ns):
        name = group.findtext("a:AutoScalingGroupName", "", ns)
        instances = group.find("a:Instances", ns)
        if instances is None:
            instances = ET.SubElement(group, f"{{{AUTOSCALING_NS}}}Instances")
        listed = {m.findtext("a:InstanceId", "", ns) for m in instances.iterfind("a:member", ns)}
        for (g, iid), info in held.items():
            if g != name or iid in listed:
                continue
            member = ET.SubElement(instances, f"{{{AUTOSCALING_NS}}}member")
            for tag, value in (
                ("InstanceId", iid),
                ("InstanceType", info["type"]),
                ("AvailabilityZone", info["zone"]),
                ("LifecycleState", info["state"]),
                ("HealthStatus", "Healthy"),
                ("ProtectedFromScaleIn", "false"),
            ):
                ET.SubElement(member, f"{{{AUTOSCALING_NS}}}{tag}").text = value
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root)


def put_metric_data_form(req: dict[str, Any]) -> dict[str, str]:
    form = {"Action": "PutMetricData", "Version": "2010-08-01", "Namespace": req.get("Namespace", "")}
    for i, d in enumerate(req.get("MetricData", []) or [], 1):
        p = f"MetricData.member.{i}."
        form[p + "MetricName"] = d["MetricName"]
        if d.get("Value") is not None:
            form[p + "Value"] = repr(float(d["Value"]))
        if d.get("Unit"):
            form[p + "Unit"] = d["Unit"]
        ts = d.get("Timestamp")
        if ts is not None:
            if isinstance(ts, (int, float)):
                ts = dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)
            form[p + "Timestamp"] = ts.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if d.get("StorageResolution") is not None:
            form[p + "StorageResolution"] = str(d["StorageResolution"])
        for j, dim in enumerate(d.get("Dimensions", []) or [], 1):
            form[f"{p}Dimensions.member.{j}.Name"] = dim["Name"]
            form[f"{p}Dimensions.member.{j}.Value"] = dim["Value"]
        for j, v in enumerate(d.get("Values", []) or [], 1):
            form[f"{p}Values.member.{j}"] = repr(float(v))
        for j, v in enumerate(d.get("Counts", []) or [], 1):
            form[f"{p}Counts.member.{j}"] = repr(float(v))
        sv = d.get("StatisticValues")
        if sv:
            for k in ("SampleCount", "Sum", "Minimum", "Maximum"):
                form[f"{p}StatisticValues.{k}"] = repr(float(sv[k]))
    return form


def parse_xml_error(body: bytes) -> tuple[str, str]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "InternalServiceError", body.decode(errors="replace")[:500]
    code = message = None
    for el in root.iter():
        tag = el.tag.split("}")[-1]
        if tag == "Code" and code is None:
            code = el.text
        elif tag == "Message" and message is None:
            message = el.text
    return code or "InternalServiceError", message or ""


# ------------------------------------------------------------------------------------------
# The IMDS front
# ------------------------------------------------------------------------------------------

IMDS_PATHS = {
    "/latest/meta-data/instance-id": "instance-id",
    "/latest/meta-data/placement/region": "region",
    "/latest/meta-data/placement/availability-zone": "availability-zone",
    "/latest/meta-data/public-ipv4": "public-ipv4",
    "/latest/meta-data/ipv6": "ipv6",
    "/latest/meta-data/autoscaling/target-lifecycle-state": "target-lifecycle-state",
    "/latest/meta-data/spot/instance-action": "spot-instance-action",
}


class ImdsHandler(Handler):
    down_in_outage = staticmethod(lambda: STATE.outage_imds)

    def dispatch(self) -> None:
        if self.outage_gate():
            return
        self.body()
        path = self.path.split("?")[0]
        if path == "/latest/api/token":
            if self.command != "PUT":
                self.reply(405, b"", {})
                return
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            if not ttl or not ttl.isdigit() or not (1 <= int(ttl) <= 21600):
                self.reply(400, b"", {})
                return
            token = uuid.uuid4().hex
            with STATE.lock:
                STATE.tokens[token] = time.time() + int(ttl)
            self.reply(200, token.encode(), {"X-aws-ec2-metadata-token-ttl-seconds": ttl, "Content-Type": "text/plain"})
            return
        if self.command != "GET":
            self.reply(405, b"", {})
            return
        token = self.headers.get("X-aws-ec2-metadata-token", "")
        with STATE.lock:
            valid = STATE.tokens.get(token, 0) > time.time()
            values = dict(STATE.imds_by_source.get(self.client_address[0], STATE.imds))
        if not valid:
            self.reply(401, b"", {})
            return
        value = self.lookup(path, values)
        if value is None:
            self.reply(404, b"<html><body>404 - Not Found</body></html>", {"Content-Type": "text/html"})
            return
        self.reply(200, value.encode(), {"Content-Type": "text/plain"})

    @staticmethod
    def lookup(path: str, values: dict[str, Any]) -> str | None:
        key = IMDS_PATHS.get(path.rstrip("/") if path != "/" else path)
        if key == "availability-zone" and "availability-zone" not in values and values.get("region"):
            return values["region"] + "a"
        if key is not None:
            v = values.get(key)
            if v is None:
                return None
            return json.dumps(v) if isinstance(v, (dict, list)) else str(v)
        role = values.get("role")
        base = "/latest/meta-data/iam/security-credentials/"
        if role and path == base:
            return role
        if role and path == base + role:
            exp = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
            now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            return json.dumps(
                {
                    "Code": "Success",
                    "LastUpdated": now,
                    "Type": "AWS-HMAC",
                    "AccessKeyId": "AKIAIMDSSHIMTEST0001",
                    "SecretAccessKey": "shim-secret",
                    "Token": "shim-session-token",
                    "Expiration": exp,
                }
            )
        return None


# ------------------------------------------------------------------------------------------
# The control port
# ------------------------------------------------------------------------------------------

FRONTS: dict[str, Front] = {}


def end_outage() -> None:
    with STATE.lock:
        STATE.outage_until = None
        mode, imds = STATE.outage_mode, STATE.outage_imds
    if mode == "refuse":
        FRONTS["aws"].start()
        if imds:
            FRONTS["imds"].start()


def start_outage(seconds: float | None, mode: str, imds: bool) -> None:
    if STATE.outage_active():
        end_outage()
    with STATE.lock:
        STATE.outage_until = time.time() + seconds if seconds is not None else float("inf")
        STATE.outage_mode = mode
        STATE.outage_imds = imds
        until = STATE.outage_until
    fronts = [FRONTS["aws"]] + ([FRONTS["imds"]] if imds else [])
    for f in fronts:
        if mode == "refuse":
            f.stop()
        else:
            f.reset_all()
    if seconds is not None:

        def later() -> None:
            time.sleep(seconds)
            with STATE.lock:
                same = STATE.outage_until == until
            if same:
                end_outage()

        threading.Thread(target=later, daemon=True).start()


class ControlHandler(Handler):
    def dispatch(self) -> None:
        body = self.body()
        path = self.path.split("?")[0]
        args = json.loads(body) if body.strip() else {}
        if path == "/_shim/health":
            self.reply_json(200, {"ok": True})
        elif path == "/_shim/imds" and self.command == "POST":
            source = args.pop("source", None)
            with STATE.lock:
                if source is None:
                    target = STATE.imds
                elif args.pop("forget", False):
                    STATE.imds_by_source.pop(source, None)
                    target = {}
                else:
                    target = STATE.imds_by_source.setdefault(source, {})
                for k, v in args.items():
                    if v is None:
                        target.pop(k, None)
                    else:
                        target[k] = v
                values = dict(target)
            self.reply_json(200, values)
        elif path == "/_shim/warm" and self.command == "POST":
            key = (args["group"], args["instance_id"])
            with STATE.lock:
                if args.get("state"):
                    STATE.warm[key] = args["state"]
                else:
                    STATE.warm.pop(key, None)
            self.reply_json(200, {"warm": [list(k) for k in STATE.warm]})
        elif path == "/_shim/terminating" and self.command == "POST":
            key = (args["group"], args["instance_id"])
            with STATE.lock:
                if args.get("state"):
                    STATE.terminating[key] = {
                        "state": args["state"],
                        "zone": args.get("zone", "us-east-1a"),
                        "type": args.get("type", "t3a.medium"),
                    }
                else:
                    STATE.terminating.pop(key, None)
            self.reply_json(200, {"terminating": [list(k) for k in STATE.terminating]})
        elif path == "/_shim/imds":
            with STATE.lock:
                self.reply_json(200, dict(STATE.imds))
        elif path == "/_shim/lifecycle-actions":
            with STATE.lock:
                self.reply_json(200, list(STATE.lifecycle_actions))
        elif path == "/_shim/requests":
            with STATE.lock:
                self.reply_json(200, list(STATE.requests))
        elif path == "/_shim/outage" and self.command == "POST":
            mode = args.get("mode", "refuse")
            if mode not in ("refuse", "hang"):
                self.reply_json(400, {"error": f"mode must be refuse or hang, not {mode!r}"})
                return
            start_outage(args.get("seconds"), mode, bool(args.get("imds", False)))
            self.reply_json(200, {"active": True})
        elif path == "/_shim/deny" and self.command == "POST":
            policy = args.get("policy")
            patterns: list[str] = []
            for st in (policy or {}).get("Statement", []):
                if st.get("Effect") == "Deny":
                    actions = st.get("Action", [])
                    patterns += [actions] if isinstance(actions, str) else list(actions)
            with STATE.lock:
                STATE.deny_policy, STATE.deny_patterns = policy, patterns
                STATE.deny_error = (str(args.get("code", "AccessDenied")), int(args.get("status", 403)))
            self.reply_json(200, {"patterns": patterns})
        elif path == "/_shim/deny":
            with STATE.lock:
                self.reply_json(200, {"policy": STATE.deny_policy, "denied": list(STATE.denied)})
        elif path == "/_shim/outage/stop" and self.command == "POST":
            if STATE.outage_active():
                end_outage()
            self.reply_json(200, {"active": False})
        elif path == "/_shim/outage":
            with STATE.lock:
                info = {"mode": STATE.outage_mode, "imds": STATE.outage_imds}
            info["active"] = STATE.outage_active()
            self.reply_json(200, info)
        elif path == "/_shim/backup" and self.command == "POST":
            self.reply_json(200, BACKUP.add_point(**args))
        elif path.startswith("/_shim/ctl/") and self.command == "POST":
            name = path.rsplit("/", 1)[-1]
            fn = getattr(awsctl, name, None)
            if name.startswith("_") or not callable(fn) or name not in awsctl.COMMANDS:
                self.reply_json(404, {"error": f"no ctl command {name}"})
                return
            try:
                self.reply_json(200, fn(STATE.moto_url, **args))
            except Exception as e:
                self.reply_json(500, {"error": repr(e)})
        else:
            self.reply_json(404, {"error": f"unknown {self.command} {path}"})


def function_urls_in_templates() -> None:
    """moto 5.2 serves function URLs through the Lambda API but has no AWS::Lambda::Url
    resource, so a template's URL is skipped and an output that reads its FunctionUrl fails every
    DescribeStacks ("references undefined resource"). Here the resource makes the function's URL
    config, as CloudFormation does (Ref: the function's ARN; GetAtt FunctionUrl, FunctionArn)."""
    from moto.awslambda.models import lambda_backends
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    if "AWS::Lambda::Url" in parsing.get_model_map():
        return

    class FunctionUrl(CloudFormationModel):
        # moto files each model under its service by the module's second name.
        __module__ = "moto.awslambda.shim"

        def __init__(self, function: Any, config: Any) -> None:
            self.function = function
            self.config = config

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Lambda::Url"

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @property
        def physical_resource_id(self) -> str:
            return self.function.function_arn

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in ("FunctionUrl", "FunctionArn")

        def get_cfn_attribute(self, attribute_name: str) -> Any:
            if attribute_name == "FunctionUrl":
                return self.config.url
            if attribute_name == "FunctionArn":
                return self.function.function_arn
            from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
            raise UnformattedGetAttTemplateException()

        @classmethod
        def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Any,  # type: ignore[override]
                                            account_id: str, region_name: str, **kwargs: Any) -> "FunctionUrl":
            props = cloudformation_json["Properties"]
            function = lambda_backends[account_id][region_name].get_function(props["TargetFunctionArn"])
            config = function.url_config or function.create_url_config(
                {k: v for k, v in props.items() if k in ("AuthType", "Cors", "InvokeMode")})
            return cls(function, config)

    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()


def access_points_have_their_id() -> None:
    """moto 5.2's EFS access point has no `physical_resource_id`, so a `Ref` to an
    AWS::EFS::AccessPoint resolves to the Python object's repr ("<moto.efs.models.AccessPoint
    object at 0x...>") in user-data and task definitions alike. CloudFormation's Ref gives the
    access point's id (fsap-...)."""
    from moto.efs import models as efs_models

    if not hasattr(efs_models.AccessPoint, "physical_resource_id"):
        efs_models.AccessPoint.physical_resource_id = property(lambda self: self.access_point_id)  # type: ignore[attr-defined]


def change_sets_say_what_they_replace() -> None:
    """A change set's changes for the file systems as CloudFormation reports them (see the module's
    docstring); moto's own entries stand for every other resource."""
    from moto.cloudformation import models

    original = models.ChangeSet.diff

    def diff(self: Any) -> list[Any]:
        changes = original(self)
        if self.change_set_type != "UPDATE" or not self.stack.template:
            return changes
        region = self.stack.region_name
        old = cfntemplate.Values(cfntemplate.parse(self.stack.template),
                                 dict(self.stack.resource_map.input_parameters or {}), region)
        new = cfntemplate.Values(cfntemplate.parse(self.template), dict(self.parameters or {}), region)
        ours = cfntemplate.resource_changes(old, new)
        names = {c["LogicalResourceId"] for c in ours}
        names |= {n for n, r in new.template.get("Resources", {}).items() if r["Type"] in cfntemplate.CREATE_ONLY}
        changes = [c for c in changes if c.logical_resource_id not in names]
        for c in ours:
            change = models.Change(c["Action"], c["LogicalResourceId"], c["ResourceType"])
            if "Replacement" in c:
                change.replacement = c["Replacement"]  # type: ignore[attr-defined]
            changes.append(change)
        return changes

    models.ChangeSet.diff = diff  # type: ignore[method-assign]


def executed_change_sets_update_the_stack() -> None:
    """After a change set runs, creating the stack or updating it, the stack's outputs and parsed
    template are the change set's (moto's Stack.update does this; its execute_change_set does not,
    so a stack made by `aws cloudformation deploy` had no outputs)."""
    from moto.cloudformation import models

    original = models.CloudFormationBackend.execute_change_set

    def execute(self: Any, change_set_name: str, stack_name: str | None = None) -> Any:
        result = original(self, change_set_name, stack_name)
        change_set = next((c for arn, c in self.change_sets.items()
                           if change_set_name in (arn, c.change_set_name)), None)
        if change_set is not None and change_set.change_set_type in ("CREATE", "UPDATE"):
            stack = self.stacks[change_set.stack_id]
            stack._parse_template()  # noqa: SLF001
            stack.output_map = stack._create_output_map()  # noqa: SLF001
        return result

    models.CloudFormationBackend.execute_change_set = execute  # type: ignore[method-assign]


def updates_replace_what_cloudformation_replaces() -> None:
    """A stack update (an executed change set, or UpdateStack) replaces what CloudFormation
    replaces: moto updates a resource in place, or not at all, whatever changed, so a new
    FileSystemType left the world's file system id as it was. Here each resource that
    cfntemplate.resource_changes says is replaced (a create-only property changed, or it names a
    replaced resource in one) is made anew from the new template, with a new physical id, before
    anything that names it is updated; the resources that name a replaced one in other properties
    (a launch template, a role, the service) are updated to name the replacement; then the old
    resource is deleted, unless its UpdateReplacePolicy is Retain, which keeps it, out of the
    stack. A resource whose Condition turns true is created, one whose Condition turns false is
    deleted (unless its DeletionPolicy is Retain). And, as the group's launch template version is
    `!GetAtt LaunchTemplate.LatestVersionNumber`, a group follows its updated launch template
    (docs/aws-sources.md, section 18)."""
    from moto.cloudformation import parsing
    from moto.iam.models import iam_backends

    original_update = parsing.ResourceMap.update
    original_diff = parsing.ResourceMap.build_resource_diff

    def build_resource_diff(self: Any, other_template: dict[str, Any],
                            parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        diff = original_diff(self, other_template, parameters)
        plan = getattr(self, "_shim_plan", None)
        if plan is None:
            return diff
        ours = set(plan["create"]) | set(plan["remove"])
        # Created anew (moto's Add phase creates each through the lazy map, so whatever a new
        # resource names that is also new is created first).
        diff["Add"] = [n for n in diff["Add"] if n not in ours] + [n for n in plan["create"] if n not in diff["Add"]]
        diff["Modify"] = [n for n in diff["Modify"] if n not in ours] + [
            n for n in plan["modify"] if n not in diff["Modify"]]
        plan["modified"] = list(diff["Modify"])
        return diff

    def update(self: Any, template: dict[str, Any], parameters: dict[str, Any] | None = None) -> None:
        region = self._region_name  # noqa: SLF001
        old_template = self._template  # noqa: SLF001
        old = cfntemplate.Values(old_template, dict(self.input_parameters or {}), region)
        new = cfntemplate.Values(template, dict(parameters or self.input_parameters or {}), region)
        changes = cfntemplate.resource_changes(old, new)
        replace = [c["LogicalResourceId"] for c in changes if c.get("Replacement") == "True"]
        plan: dict[str, list[str]] = {
            "create": replace + [c["LogicalResourceId"] for c in changes if c["Action"] == "Add"],
            "remove": [c["LogicalResourceId"] for c in changes if c["Action"] == "Remove"],
            "modify": [c["LogicalResourceId"] for c in changes
                       if c["Action"] == "Modify" and c.get("Replacement") != "True"],
            "modified": []}
        parsed = self._parsed_resources  # noqa: SLF001
        # Out of the map, so that the first lookup of each makes the replacement.
        retired = {n: parsed.pop(n) for n in replace if n in parsed}
        self._shim_plan = plan
        try:
            original_update(self, template, parameters)
        finally:
            del self._shim_plan
        for name in plan["create"]:
            if new.exists(name):
                _ = self[name]
        account = self._account_id  # noqa: SLF001
        for name in plan["modified"]:
            res = template["Resources"].get(name, {})
            # moto's role update keeps the role's inline policies as they were.
            if res.get("Type") == "AWS::IAM::Role" and name in parsed and new.exists(name):
                role = parsed[name]
                for policy in parsing.clean_json(res.get("Properties", {}).get("Policies", []), self):
                    # A statement under a false condition (!If [..., !Ref AWS::NoValue]) is no
                    # statement, as CloudFormation drops it; moto's clean_json leaves a null.
                    document = dict(policy["PolicyDocument"])
                    document["Statement"] = [s for s in document.get("Statement", []) if s is not None]
                    iam_backends[account]["aws"].put_role_policy(role.name, policy["PolicyName"], json.dumps(document))
            if res.get("Type") == "AWS::EC2::LaunchTemplate":
                follow_launch_template(template, parsed, name)
        old_resources = old_template.get("Resources", {})
        for name, resource in reversed(list(retired.items())):
            if old_resources[name].get("UpdateReplacePolicy") != "Retain":
                self._delete_resource(resource, old_resources[name])  # noqa: SLF001
        for name in plan["remove"]:
            resource = parsed.pop(name, None)
            if resource is not None and old_resources[name].get("DeletionPolicy") != "Retain":
                self._delete_resource(resource, old_resources[name])  # noqa: SLF001

    parsing.ResourceMap.update = update  # type: ignore[method-assign]
    parsing.ResourceMap.build_resource_diff = build_resource_diff  # type: ignore[method-assign]


def follow_launch_template(template: dict[str, Any], parsed: dict[str, Any], launch_template: str) -> None:
    """The groups whose launch template version is `!GetAtt <launch_template>.LatestVersionNumber`
    move to its latest version, as CloudFormation updates them (moto leaves them where they were)."""
    lt = parsed.get(launch_template)
    if lt is None:
        return
    latest = f'{{"Fn::GetAtt": ["{launch_template}", "LatestVersionNumber"]}}'
    for name, res in template["Resources"].items():
        group = parsed.get(name)
        if res["Type"] != "AWS::AutoScaling::AutoScalingGroup" or group is None or latest not in json.dumps(res):
            continue
        if getattr(group, "ec2_launch_template", None) is lt:
            group.launch_template_version = group.provided_launch_template_version = str(lt.latest_version_number)


def keep_resources_moto_cannot_update() -> None:
    """A stack update in moto replaces each modified resource whose model has no update
    (AWS::Logs::LogGroup among them) with nothing, and the next Fn::GetAtt on it fails the
    update ("references undefined resource"). CloudFormation updates such a resource in place;
    here it is kept as it was, so that an update of the stack (cloud/deploy.sh run again) goes
    through. Its changed properties are not applied: the twin's stories change none of them. The
    same for a resource whose model raises NotImplementedError on update (an EFS mount target).
    A resource whose Condition is false is left alone, as CloudFormation leaves it."""
    from moto.cloudformation import parsing

    original = parsing.parse_and_update_resource

    def update(logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str,
               region_name: str) -> Any:
        # moto updates a resource whose Condition is false too (its create skips it), and then
        # fails on a Fn::GetAtt to another such resource (the Discord endpoint's, without
        # DiscordPublicKey). CloudFormation neither creates nor updates it.
        condition = resource_json.get("Condition")
        if condition and not resources_map.lazy_condition_map[condition]:
            return resources_map._parsed_resources.get(logical_id)  # noqa: SLF001
        try:
            new = original(logical_id, resource_json, resources_map, account_id, region_name)
        except NotImplementedError:
            # moto's EFS mount target refuses any update, even one whose properties resolve to the
            # same values (a parameter its FileSystemId's Fn::If reads came along unchanged).
            new = None
        if new is None and logical_id in resources_map._parsed_resources:  # noqa: SLF001
            return resources_map._parsed_resources[logical_id]  # noqa: SLF001
        return new

    parsing.parse_and_update_resource = update

    # An update that keeps an SSM-typed parameter (UsePreviousValue, as `aws cloudformation
    # deploy` sends for every parameter it is not given) hands moto the value it stored, the
    # resolved AMI id, which moto then looks up as a parameter name and fails on.
    parse_ssm = parsing.ResourceMap.parse_ssm_parameter

    def parse_ssm_parameter(self: Any, value: str, value_type: str) -> Any:
        try:
            return parse_ssm(self, value, value_type)
        except AttributeError:
            return value

    parsing.ResourceMap.parse_ssm_parameter = parse_ssm_parameter  # type: ignore[method-assign]

    # The same for a CommaDelimitedList parameter kept with UsePreviousValue: moto hands back the
    # list it stored, then splits it as if it were the text CloudFormation keeps, and fails.
    load_parameters = parsing.ResourceMap.load_parameters

    def load_parameters_as_text(self: Any) -> Any:
        self.input_parameters = {k: ",".join(v) if isinstance(v, list) else v
                                 for k, v in (self.input_parameters or {}).items()}
        return load_parameters(self)

    parsing.ResourceMap.load_parameters = load_parameters_as_text  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aws-port", type=int, default=0)
    ap.add_argument("--imds-port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1",
                    help="address the three fronts listen on (moto itself stays on 127.0.0.1)")
    args = ap.parse_args()
    global HOST

    from moto.server import ThreadedMotoServer

    keep_resources_moto_cannot_update()
    updates_replace_what_cloudformation_replaces()
    change_sets_say_what_they_replace()
    executed_change_sets_update_the_stack()
    access_points_have_their_id()
    function_urls_in_templates()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    STATE.moto_url = f"http://{host}:{port}"
    HOST = args.host

    FRONTS["aws"] = Front("aws", AwsHandler, args.aws_port)
    FRONTS["imds"] = Front("imds", ImdsHandler, args.imds_port)
    FRONTS["control"] = Front("control", ControlHandler, args.control_port)
    for f in FRONTS.values():
        f.start()
    print(
        json.dumps(
            {
                "aws": FRONTS["aws"].url,
                "imds": FRONTS["imds"].url,
                "control": FRONTS["control"].url,
                "moto": STATE.moto_url,
            }
        ),
        flush=True,
    )
    # Exit when the parent closes our stdin (or dies), so no shim outlives its test.
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
