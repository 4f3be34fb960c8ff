"""The instance's way to the stack's artifact bucket: the VPC's S3 gateway endpoint and S3's
evaluation of the bucket policy for an anonymous GetObject, in front of the emulator's S3.

moto's S3 does not evaluate bucket policies for unsigned requests, and has no VPC endpoints
to route through, so the twin plays both from what the stack made: the request counts as
coming through an endpoint when a gateway endpoint for S3 is attached to the instance's route
table (`aws:SourceVpce` is then its id), and the bucket policy read back from the emulator
(the stack's, as the twin resolved it: tests/twin/stack.py) decides, as S3 does: an explicit Deny wins, otherwise an Allow is needed. A key that does not
exist answers 403 AccessDenied, not 404, since nothing grants s3:ListBucket (S3 answers 404 only
to a requester who may list the bucket). Sources: docs/deploy-sources.md.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import boto3
from botocore.exceptions import ClientError


class PolicyError(ValueError):
    """A policy with a form this evaluator does not know: the story fails instead of guessing."""


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in _list(patterns))


def _condition_holds(conditions: dict, context: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        for key, wanted in tests.items():
            have = context.get(key)
            wanted = [str(w).lower() if operator == "Bool" else str(w) for w in _list(wanted)]
            if operator in ("StringEquals", "Bool"):
                ok = have is not None and have in wanted
            elif operator == "StringNotEquals":
                ok = have is None or have not in wanted
            elif operator == "StringLike":
                ok = have is not None and any(fnmatch.fnmatchcase(have, w) for w in wanted)
            else:
                raise PolicyError(f"condition operator {operator} is not evaluated by the twin")
            if not ok:
                return False
    return True


def anonymous_decision(policy: dict, action: str, resource: str, context: dict[str, str]) -> str:
    """"Allow", "Deny" (explicit) or "ImplicitDeny" for an unsigned request."""
    allowed = False
    for st in _list(policy.get("Statement", [])):
        if any(k in st for k in ("NotPrincipal", "NotAction", "NotResource")):
            raise PolicyError(f"statement {st.get('Sid')}: Not* elements are not evaluated by the twin")
        if st.get("Principal") not in ("*", {"AWS": "*"}):
            continue  # grants to a signed principal: an unsigned request is not that principal
        if not _matches(st.get("Action", []), action) or not _matches(st.get("Resource", []), resource):
            continue
        if not _condition_holds(st.get("Condition", {}), context):
            continue
        if st.get("Effect") == "Deny":
            return "Deny"
        allowed = allowed or st.get("Effect") == "Allow"
    return "Allow" if allowed else "ImplicitDeny"


class Gateway:
    """GET https://<bucket>.s3.<region>.amazonaws.com/<key> as an instance in the stack's VPC sees it."""

    def __init__(self, moto_url: str, vpc_id: str, route_table_id: str, policies: dict[str, dict],
                 region: str = "us-east-1") -> None:
        self.region = region
        self.policies = policies
        self.s3 = boto3.client("s3", region_name=region, endpoint_url=moto_url,
                               aws_access_key_id="testing", aws_secret_access_key="testing")
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto_url,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["VpcEndpoints"]
        self.endpoint = next((e["VpcEndpointId"] for e in endpoints
                              if e.get("VpcEndpointType") == "Gateway"
                              and e.get("ServiceName") == f"com.amazonaws.{region}.s3"
                              and route_table_id in e.get("RouteTableIds", [])), None)

    def get(self, bucket: str, key: str) -> tuple[int, bytes, str]:
        """(HTTP status, body, why) for an anonymous GetObject over HTTPS."""
        context = {"aws:SecureTransport": "true"}
        if self.endpoint:
            context["aws:SourceVpce"] = self.endpoint
        policy = self.policies.get(bucket)
        if policy is None:
            return 403, b"AccessDenied", "no bucket policy: nothing grants an anonymous read"
        decision = anonymous_decision(policy, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", context)
        if decision != "Allow":
            return 403, b"AccessDenied", f"bucket policy: {decision} (aws:SourceVpce={self.endpoint})"
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return 403, b"AccessDenied", "no such key (and no s3:ListBucket, so 403)"
            raise
        return 200, body, f"allowed through {self.endpoint}"
