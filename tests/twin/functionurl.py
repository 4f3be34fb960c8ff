"""Lambda function URLs in the twin (AWS::Lambda::Url, which moto's CloudFormation skips): a real
HTTP server that stands where the URL would, turns each request into the event Lambda gives a
function behind its URL (payload format 2.0: lower-case headers, the body as text, or base64 for
binary content), runs the function's own code and answers with what the handler returns.

The code is what the deploy command put in the artifact bucket (the function's Code.S3Bucket and
S3Key, resolved from the template and read from the emulator's S3), unpacked as Lambda unpacks a
zip, and imported by its Handler with the function's environment from the emulator. What it
prints goes to its log group. A handler that fails or runs past the function's Timeout gets 502,
as Lambda's URL answers then.
"""

from __future__ import annotations

import base64
import http.server
import importlib
import io
import json
import os
import sys
import threading
import time
import types
import zipfile
from pathlib import Path
from typing import Any, Callable

import stack

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")


def load_zip_function(code: bytes, folder: Path, handler: str, env: dict[str, str], aws_url: str) -> types.ModuleType:
    """Unpacks a function's zip into `folder` and imports its handler's module, with the
    function's environment set and boto3 pointed at the emulator (stack._load_function)."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(code)) as z:
        z.extractall(folder)
    os.environ.update(env)
    os.environ.update({
        "AWS_ENDPOINT_URL": aws_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": stack.REGION, "AWS_REGION": stack.REGION,
    })
    sys.path.insert(0, str(folder))
    try:
        for path in folder.glob("*.py"):  # the zip's own modules, not same-named ones imported before
            sys.modules.pop(path.stem, None)
        return importlib.import_module(handler.rsplit(".", 1)[0])
    finally:
        sys.path.remove(str(folder))


class FunctionUrl:
    """One function URL: `url` takes real HTTP requests and runs the function for each."""

    def __init__(self, module: types.ModuleType, timeout: float, moto_url: str, log_group: str | None,
                 record: Callable[..., Any]) -> None:
        self.module, self.timeout, self.moto_url, self.log_group = module, timeout, moto_url, log_group
        fn = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.run()

            def do_GET(self) -> None:  # noqa: N802
                self.run()

            def run(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                status, headers, out = fn.invoke(self.command, self.path, dict(self.headers.items()), body,
                                                 self.client_address[0])
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.record = record
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def event(self, method: str, path: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict:
        raw_path, _, query = path.partition("?")
        text = any(headers.get("Content-Type", "").startswith(t) for t in TEXT_TYPES)
        now = time.time()
        return {
            "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": query,
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {
                "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                         "userAgent": headers.get("User-Agent", "")},
                "routeKey": "$default", "stage": "$default", "timeEpoch": int(now * 1000),
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            },
            "body": body.decode() if text else base64.b64encode(body).decode(),
            "isBase64Encoded": not text,
        }

    def invoke(self, method: str, path: str, headers: dict[str, str], body: bytes,
               source_ip: str) -> tuple[int, dict[str, str], bytes]:
        event = self.event(method, path, headers, body, source_ip)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["value"] = stack.invoke(self.module, event, self.moto_url, self.log_group)
            except Exception as e:  # noqa: BLE001 - Lambda answers 502 for a failed handler
                result["error"] = f"{type(e).__name__}: {e}"

        start = time.time()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(self.timeout)
        took = time.time() - start
        if worker.is_alive() or "error" in result:
            why = result.get("error", f"timed out after {self.timeout} s")
            self.record("function_url_failed", source="function_url", why=why, seconds=took)
            return 502, {"Content-Type": "application/json"}, b'{"Message":"Internal Server Error"}'
        value = result.get("value")
        if isinstance(value, dict) and "statusCode" in value:
            out = value.get("body") or ""
            data = base64.b64decode(out) if value.get("isBase64Encoded") else out.encode()
            status, headers_out = int(value["statusCode"]), dict(value.get("headers") or {})
        else:  # a plain value: Lambda sends it as JSON with 200
            status, headers_out, data = 200, {"Content-Type": "application/json"}, json.dumps(value).encode()
        self.record("function_url_answered", source="function_url", status=status, seconds=took)
        return status, headers_out, data

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(deployed: stack.Deployed, moto_url: str, aws_url: str, workdir: Path,
          record: Callable[..., Any]) -> dict[str, FunctionUrl]:
    """A FunctionUrl for each AWS::Lambda::Url of the deployed stack whose condition holds."""
    resolve = stack.Resolver(deployed.template, deployed.params, deployed.physical, moto_url, deployed.name)
    s3 = stack._client(moto_url, "s3")  # noqa: SLF001
    urls: dict[str, FunctionUrl] = {}
    for logical, res in deployed.template["Resources"].items():
        if res["Type"] != "AWS::Lambda::Url" or ("Condition" in res and not resolve.condition(res["Condition"])):
            continue
        function = res["Properties"]["TargetFunctionArn"]["Fn::GetAtt"][0]
        props = deployed.template["Resources"][function]["Properties"]
        code = resolve(props["Code"])
        if "S3Key" not in code:
            raise stack.StackError(f"{function}: the twin runs function URLs over code from S3 only, not {sorted(code)}")
        zipped = s3.get_object(Bucket=code["S3Bucket"], Key=code["S3Key"])["Body"].read()
        name = deployed.physical[function]
        module = load_zip_function(zipped, workdir / function, props["Handler"],
                                   stack._function_env(moto_url, name), aws_url)  # noqa: SLF001
        urls[logical] = FunctionUrl(module, float(props.get("Timeout", 3)), moto_url,
                                    stack.log_group_of(deployed.template, deployed.physical, function), record)
    return urls
