"""Ring 4's harness: calls through gRPC C-core (Python grpcio) and the side-by-side
comparison of two answers (code, message, bytes, metadata), reported as table rows.
The calls themselves are in cri_compare.py."""

import argparse
import re
import sys

import grpc

import pb

IMAGE = "/runtime.v1.ImageService/"
RUNTIME = "/runtime.v1.RuntimeService/"
HEX_ID = re.compile(rb"[0-9a-f]{64}")


class Answer:
    def __init__(self, code, details, body, initial, trailing):
        self.code, self.details, self.body = code, details, body
        self.initial, self.trailing = initial, trailing

    def brief(self):
        text = (self.details or "").replace("\n", " ")
        return f"{self.code.name} {text[:90]!r}" if text else self.code.name


def metadata(pairs):
    return sorted((k, v if isinstance(v, str) else v.hex()) for k, v in (pairs or ()))


class Endpoint:
    def __init__(self, socket, options):
        self.channel = grpc.insecure_channel(f"unix:{socket}", options=options)

    def call(self, method, request=b"", timeout=60.0):
        rpc = self.channel.unary_unary(method)
        try:
            body, call = rpc.with_call(request, timeout=timeout,
                                       metadata=[("x-ring", "4")])
            return Answer(call.code(), call.details(), body,
                          metadata(call.initial_metadata()),
                          metadata(call.trailing_metadata()))
        except grpc.RpcError as err:
            return Answer(err.code(), err.details(), None,
                          metadata(err.initial_metadata()),
                          metadata(err.trailing_metadata()))

    def stream(self, method, request=b"", timeout=3.0):
        call = self.channel.unary_stream(method)(request, timeout=timeout)
        messages = []
        try:
            for message in call:
                messages.append(message)
        except grpc.RpcError:
            pass
        return Answer(call.code(), call.details(), messages,
                      metadata(call.initial_metadata()),
                      metadata(call.trailing_metadata()))


def exact(body):
    return body


def repeated(number):
    """Order-free comparison of a repeated message field (list answers)."""
    return lambda body: None if body is None else sorted(
        v for n, _, v in pb.fields(body) if n == number)


def dropping(*path_and_numbers):
    """Drops fields (last element: numbers) inside the message at a path of fields."""
    *path, numbers = path_and_numbers

    def normalise(body):
        if body is None:
            return None
        return _drop(body, list(path), numbers)
    return normalise


def _drop(body, path, numbers):
    if not path:
        return pb.without(body, *numbers)
    out = b""
    for number, kind, value in pb.fields(body):
        if number == path[0] and kind == 2:
            out += pb.string(number, _drop(value, path[1:], numbers))
        elif kind == 0:
            out += pb.uint(number, value)
        else:
            out += pb.string(number, value)
    return out


def shape(body):
    """Field numbers two levels deep: for answers whose values are live readings."""
    if body is None:
        return None
    return [(n, sorted(m for m, _, _ in pb.fields(v)) if k == 2 else None)
            for n, k, v in pb.fields(body)]


class Report:
    def __init__(self, mode):
        self.mode, self.rows, self.failures = mode, [], []

    def same(self, name, direct, shim, body=exact, ids=(), message=True):
        """`message=False` where the message depends on which side's timer fires first."""
        problems = []
        scrub = _scrubber(ids)
        if direct.code != shim.code:
            problems.append("code")
        if message and scrub(direct.details) != scrub(shim.details):
            problems.append("message")
        if direct.initial != shim.initial:
            problems.append(f"initial metadata {direct.initial} vs {shim.initial}")
        if direct.trailing != shim.trailing:
            problems.append(f"trailing metadata {direct.trailing} vs {shim.trailing}")
        if body(scrub(direct.body)) != body(scrub(shim.body)):
            problems.append(f"answer bytes {direct.body!r} vs {shim.body!r}")
        self._row(name, direct, shim, "same" if not problems else "DIFFERS: " + "; ".join(problems))

    def designed(self, name, direct, shim, check, why):
        """A difference imageshim makes on purpose: `check(shim)` says it is the one."""
        problem = check(shim)
        if not problem and (direct.initial, direct.trailing) != (shim.initial, shim.trailing):
            problem = f"metadata {direct.initial}/{direct.trailing} vs {shim.initial}/{shim.trailing}"
        verdict = f"by design: {why}" if not problem else f"DIFFERS: {problem}"
        self._row(name, direct, shim, verdict)

    def _row(self, name, direct, shim, verdict):
        self.rows.append((name, direct.brief(), shim.brief(), verdict))
        if verdict.startswith("DIFFERS"):
            self.failures.append(name)

    def print(self):
        print(f"\n### authority: {self.mode}\n")
        print("| call | runtime directly | through imageshim | compared |")
        print("|---|---|---|---|")
        for row in self.rows:
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")


def _scrubber(ids):
    def scrub(value):
        if value is None:
            return None
        if isinstance(value, list):
            return [scrub(v) for v in value]
        is_text = isinstance(value, str)
        data = value.encode() if is_text else value
        for ident in ids:
            if ident:  # same length, so protobuf length prefixes stay right
                data = data.replace(ident, b"X" * len(ident))
        return data.decode() if is_text else data
    return scrub


def image_spec(image, handler=""):
    spec = pb.string(1, image)
    return spec + (pb.string(19, handler) if handler else b"")


def pull_request(image, handler="", auth=b""):
    request = pb.message(1, image_spec(image, handler))
    return request + (pb.message(2, auth) if auth else b"")


def status_is(code, *needles):
    def check(shim):
        if shim.code != code:
            return f"imageshim answered {shim.code.name}, expected {code.name}"
        missing = [n for n in needles if n not in (shim.details or "")]
        return f"message lacks {missing}" if missing else None
    return check
