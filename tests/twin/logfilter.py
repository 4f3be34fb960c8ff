"""CloudWatch Logs filter patterns for unstructured log events, as the cloud twin applies them
to the Route53 query log before it delivers matching events to the subscription's function.

The rules, from "Filter pattern syntax for metric filters, subscription filters, filter log
events, and Live Tail" and "Supported regular expressions (regex) syntax" in the CloudWatch Logs
user guide (docs/aws-sources.md has the links):

- an empty pattern matches every event;
- terms are matched as case-sensitive substrings; a term with characters other than letters and
  digits is written in double quotes (`" A "`);
- several terms separated by spaces must all occur (AND);
- `?term` terms: the event matches when any of them occurs (OR);
- `-term` excludes events that contain the term;
- `%regex%`: a regular expression made of letters, digits, `: _ # = @ / ; , -`, and the
  operators `^ $ ? [ ] { } | \\ * + .`; groups `( )` and other characters are rejected.

JSON (`{ ... }`) and space-delimited (`[ ... ]`) patterns are not needed by the stack and are
rejected with an error rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REGEX_ALLOWED = re.compile(r"^[A-Za-z0-9:_#=@/;,\-^$?\[\]{}|\\*+.]*$")


class PatternError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    text: str
    kind: str  # "and", "or", "not"
    regex: re.Pattern | None = None

    def found_in(self, message: str) -> bool:
        if self.regex is not None:
            return self.regex.search(message) is not None
        return self.text in message


def parse(pattern: str) -> list[Term]:
    """Splits a pattern into terms. Raises PatternError for what CloudWatch Logs would refuse
    or what the twin does not implement."""
    s = pattern.strip()
    if s.startswith("{") or s.startswith("["):
        raise PatternError(f"JSON and space-delimited filter patterns are not implemented: {pattern!r}")
    terms: list[Term] = []
    i = 0
    while i < len(s):
        if s[i].isspace():
            i += 1
            continue
        kind = "and"
        if s[i] in "?-" and i + 1 < len(s) and not s[i + 1].isspace():
            kind = "or" if s[i] == "?" else "not"
            i += 1
        if s[i] == '"':
            end = s.find('"', i + 1)
            if end < 0:
                raise PatternError(f"unclosed quote in filter pattern {pattern!r}")
            terms.append(Term(s[i + 1:end], kind))
            i = end + 1
        elif s[i] == "%":
            end = s.find("%", i + 1)
            if end < 0:
                raise PatternError(f"unclosed % in filter pattern {pattern!r}")
            body = s[i + 1:end]
            if not REGEX_ALLOWED.match(body):
                raise PatternError(f"regex {body!r} has characters CloudWatch Logs does not accept")
            terms.append(Term(body, kind, re.compile(body)))
            i = end + 1
        else:
            end = i
            while end < len(s) and not s[end].isspace():
                end += 1
            terms.append(Term(s[i:end], kind))
            i = end
    return terms


def matches(pattern: str, message: str) -> bool:
    terms = parse(pattern)
    if not terms:
        return True
    ors = [t for t in terms if t.kind == "or"]
    ands = [t for t in terms if t.kind == "and"]
    nots = [t for t in terms if t.kind == "not"]
    if ors and not any(t.found_in(message) for t in ors):
        return False
    if not all(t.found_in(message) for t in ands):
        return False
    return not any(t.found_in(message) for t in nots)
