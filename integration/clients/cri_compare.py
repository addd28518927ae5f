#!/usr/bin/env python3
"""Ring 4: CRI calls made with gRPC C-core (Python grpcio, which this project did not
write) against imageshim and, in the same run, against the real runtime (containerd 1.6, containerd 2.x, CRI-O) directly.
Every call is compared side by side — status code, message, answer bytes, answer
metadata — once with grpcio's default `:authority` (the %-encoded socket path) and once
with `grpc.default_authority=localhost`. Differences imageshim makes on purpose
(DESIGN 2.2) are checked as such. Prints a table per mode; exit status 1 when anything
else differs.

Run by integration/real_clients.rs, so by hack/test.sh and CI."""

import argparse
import os
import sys

import grpc

import pb
from ring import (IMAGE, RUNTIME, Endpoint, Report, dropping, exact, image_spec,
                  pull_request, repeated, shape, status_is)

C = grpc.StatusCode


def image_calls(report, direct, shim, args):
    both = lambda method, request=b"", **kw: (direct.call(method, request, **kw),
                                              shim.call(method, request, **kw))
    image = f"{args.registry}/ring/busybox:1"
    private = f"{args.auth_registry}/ring/private:1"
    missing = f"{args.registry}/ring/does-not-exist:1"

    report.same("Version", *both(RUNTIME + "Version", pb.string(1, "v1")))
    report.same("ImageFsInfo", *both(IMAGE + "ImageFsInfo"),
                body=lambda b: repeated(1)(dropping(1, [1])(b)))
    report.same("PullImage", *both(IMAGE + "PullImage", pull_request(image)))
    report.same("PullImage, known handler", *both(IMAGE + "PullImage", pull_request(image, "runc")))
    report.same("ImageStatus", *both(IMAGE + "ImageStatus", pb.message(1, image_spec(image))))
    report.same("ImageStatus, missing image",
                *both(IMAGE + "ImageStatus", pb.message(1, image_spec(missing))))
    direct_answer, shim_answer = both(IMAGE + "ImageStatus", pb.message(1, image_spec(image, "runc")))
    report.designed("ImageStatus, handler named", direct_answer, shim_answer,
                    lambda s: handler_marked(direct_answer, s, "runc"),
                    "Image.spec.runtime_handler set to the handler asked for")
    if args.unpacked_elsewhere:
        # Pulled above for the default handler only: not unpacked in this handler's
        # snapshotter, so imageshim says "not present" where containerd says present.
        direct_answer, shim_answer = both(IMAGE + "ImageStatus",
                                          pb.message(1, image_spec(image, args.unpacked_elsewhere)))
        report.designed("ImageStatus, handler with another snapshotter", direct_answer, shim_answer,
                        lambda s: not_present(direct_answer, s),
                        "not present until unpacked in that handler's snapshotter")
    pinned = f"{args.registry}/ring/pinned:1"
    direct_answer, shim_answer = both(IMAGE + "ImageStatus", pb.message(1, image_spec(pinned)))
    report.designed("ImageStatus, pinned image", direct_answer, shim_answer,
                    lambda s: pinned_marked(direct_answer, s),
                    "Image.pinned set for a [[pinned]] image")
    direct_answer, shim_answer = both(IMAGE + "ListImages")
    report.designed("ListImages", direct_answer, shim_answer,
                    lambda s: list_pinned(direct_answer, s, pinned),
                    "same images; Image.pinned set on the [[pinned]] one only")
    direct_answer, shim_answer = both(IMAGE + "ListImages",
                                      pb.message(1, pb.message(1, image_spec(image))))
    report.designed("ListImages, filter", direct_answer, shim_answer,
                    lambda s: list_pinned(direct_answer, s, pinned),
                    "same images; Image.pinned set on the [[pinned]] one if listed")
    removed = []
    for endpoint in (direct, shim):
        endpoint.call(IMAGE + "PullImage", pull_request(f"{args.registry}/ring/removable:1"))
        removed.append(endpoint.call(IMAGE + "RemoveImage",
                                     pb.message(1, image_spec(f"{args.registry}/ring/removable:1"))))
    report.same("RemoveImage", *removed)
    report.same("RemoveImage, missing image",
                *both(IMAGE + "RemoveImage", pb.message(1, image_spec(missing))))
    report.same("PullImage, missing image", *both(IMAGE + "PullImage", pull_request(missing)))
    # Code only: the client's 1 ms timer and the server's deadline race, directly as
    # through imageshim, and the message is whichever side answered first. The registry
    # never answers, so no side can finish the pull first.
    direct_answer, shim_answer = both(IMAGE + "PullImage",
                                      pull_request(f"{args.silent_registry}/ring/slow:1"), timeout=0.001)
    report.designed("PullImage, 1 ms deadline", direct_answer, shim_answer,
                    lambda s: deadline_answer(direct_answer, s),
                    "DEADLINE_EXCEEDED, as critest expects (directly, the client's timer and the "
                    "runtime's RST_STREAM race: DEADLINE_EXCEEDED or CANCELLED)")
    report.same("PullImage, no credentials (htpasswd registry)",
                *both(IMAGE + "PullImage", pull_request(private)))
    wrong = pb.string(1, args.auth_user) + pb.string(2, "not-the-password")
    report.same("PullImage, wrong credentials",
                *both(IMAGE + "PullImage", pull_request(private, auth=wrong)))
    right = pb.string(1, args.auth_user) + pb.string(2, args.auth_password)
    report.same("PullImage, right credentials",
                *both(IMAGE + "PullImage", pull_request(private, auth=right)))
    direct_answer, shim_answer = both(IMAGE + "PullImage", pull_request("Ring/Busybox:1"))
    report.designed("PullImage, invalid reference", direct_answer, shim_answer,
                    status_is(C.INVALID_ARGUMENT, '"Ring/Busybox:1"', "lowercase"),
                    "refused with InvalidArgument naming the rule, before any runtime call")
    direct_answer, shim_answer = both(IMAGE + "PullImage", pull_request(image, "no-such-handler"))
    report.designed("PullImage, unknown handler", direct_answer, shim_answer,
                    status_is(C.INVALID_ARGUMENT, '"no-such-handler"', "runc"),
                    "handlers discovered from the runtime's config; unknown ones refused")


def streamed_images(messages):
    """Every Image of a StreamImages answer, whatever the batches and their order
    (containerd lists its image store in map order)."""
    if messages is None:
        return None
    return sorted(v for m in messages for n, _, v in pb.fields(m) if n == 1)


def not_present(direct, shim):
    if shim.code != C.OK or direct.code != C.OK:
        return f"codes {direct.code.name} / {shim.code.name}"
    if pb.first(direct.body, 1) is None:
        return "not present directly either"
    if shim.body:
        return f"through imageshim the answer is {shim.body!r}"
    return None


def deadline_answer(direct, shim):
    if direct.code not in (C.DEADLINE_EXCEEDED, C.CANCELLED):
        return f"directly {direct.code.name}"
    if shim.code != C.DEADLINE_EXCEEDED:
        return f"through imageshim {shim.code.name}"
    return None


def handler_marked(direct, shim, handler):
    if shim.code != C.OK or direct.code != C.OK:
        return f"codes {direct.code.name} / {shim.code.name}"
    # Appended after the runtime's own spec (CRI-O sends one): a decoder merges them,
    # the last runtime_handler wins.
    image = pb.first(shim.body, 1)
    specs = [v for n, _, v in pb.fields(image) if n == 7]
    handlers = [v for s in specs for n, _, v in pb.fields(s) if n == 19]
    marked = handlers[-1] if handlers else None
    if marked != handler.encode():
        return f"spec.runtime_handler is {marked!r}"
    unmarked = dropping(1, [7])
    if unmarked(shim.body) != unmarked(direct.body):
        return "the rest of the image differs"
    return None


def pinned_marked(direct, shim):
    if shim.code != C.OK or direct.code != C.OK:
        return f"codes {direct.code.name} / {shim.code.name}"
    if pb.first(shim.body, 1, 8) != 1 or pb.first(direct.body, 1, 8) not in (None, 0):
        return f"pinned is {pb.first(direct.body, 1, 8)!r} / {pb.first(shim.body, 1, 8)!r}"
    unmarked = dropping(1, [8])
    if unmarked(shim.body) != unmarked(direct.body):
        return "the rest of the image differs"
    return None


def list_pinned(direct, shim, pinned):
    if shim.code != C.OK or direct.code != C.OK:
        return f"codes {direct.code.name} / {shim.code.name}"
    images = lambda body: [v for n, _, v in pb.fields(body) if n == 1]
    unmarked = dropping([8])
    if sorted(map(unmarked, images(shim.body))) != sorted(map(unmarked, images(direct.body))):
        return "the image lists differ"
    tags = lambda i: [v.decode() for n, _, v in pb.fields(i) if n == 2]
    # The runtime may pin images itself (containerd 2.x: its sandbox image).
    pinned_directly = [tags(i) for i in images(direct.body) if pb.first(i, 8) == 1]
    marked = [tags(i) for i in images(shim.body)
              if pb.first(i, 8) == 1 and tags(i) not in pinned_directly]
    listed = any(pinned in tags(i) for i in images(direct.body))
    if marked != ([[pinned]] if listed else []):
        return f"pinned images are {marked!r}"
    return None


def pod_config(name):
    metadata = pb.message(1, pb.string(1, name), pb.string(2, name + "-uid"),
                          pb.string(3, "ring"), pb.uint(4, 0))
    host_network = pb.message(2, pb.message(1, pb.uint(1, 2)))  # NamespaceMode NODE
    return metadata + pb.message(8, host_network)


def runtime_calls(report, direct, shim, args):
    """The kubelet's pod lifecycle, once directly and once through imageshim, with the
    same names (one after the other), IDs and timestamps masked."""
    image = f"{args.registry}/ring/busybox:1"
    names = [f"ring-{report.mode_tag}-{side}".encode() for side in "ds"]
    if args.no_pods:
        print(f"\npods: not run ({args.no_pods})")
        answers = [{"_ids": []}, {"_ids": []}]
    else:
        answers = [pod_lifecycle(endpoint, image, name.decode())
                   for endpoint, name in zip((direct, shim), names)]
    ids = answers[0].pop("_ids") + answers[1].pop("_ids") + names
    if not args.no_pods and answers[0]["RunPodSandbox"].code != C.OK:
        # Comparing two identical failures would hide that no pod ran: say so and fail.
        report.failures.append("the runtime could not run a pod here: "
                               + (answers[0]["RunPodSandbox"].details or ""))
    status_times = dropping(1, [1, 4, 5, 6])
    listed = lambda body: repeated(1)(dropping(1, [1, 2, 7])(body)) if body else body
    compare = {"ContainerStatus": status_times, "ListContainers": listed,
               "ContainerStats": shape, "PodSandboxStatus": shape}
    for name in answers[0]:
        report.same(name, answers[0][name], answers[1][name], body=compare.get(name, exact), ids=ids)
    both = lambda method, request=b"": (direct.call(method, request), shim.call(method, request))
    nope = pb.string(1, "does-not-exist")
    for method in ("ContainerStatus", "StartContainer", "StopContainer", "RemoveContainer",
                   "ContainerStats", "PodSandboxStatus", "StopPodSandbox", "RemovePodSandbox"):
        report.same(f"{method}, not found", *both(RUNTIME + method, nope))
    exec_missing = nope + pb.string(2, "true") + pb.uint(3, 5)
    report.same("ExecSync, not found", *both(RUNTIME + "ExecSync", exec_missing))
    # A live stream: each call sees the events of its own 3 s, and its end is the
    # client's deadline racing the runtime's (the message says which came first).
    report.same("GetContainerEvents (server-streaming)",
                direct.stream(RUNTIME + "GetContainerEvents"),
                shim.stream(RUNTIME + "GetContainerEvents"), body=lambda msgs: None,
                message=False)
    report.same("unknown method", *both(RUNTIME + "NoSuchMethodYet"))
    report.same("unknown ImageService method", *both(IMAGE + "NoSuchMethodYet"))
    # Server-streaming, added to CRI in 2026: containerd 1.6 lacks it, 2.x serves it.
    report.same("StreamImages (server-streaming)",
                direct.stream(IMAGE + "StreamImages", timeout=10.0),
                shim.stream(IMAGE + "StreamImages", timeout=10.0),
                body=streamed_images)


def pod_lifecycle(endpoint, image, name):
    """Runs a pod with one container through `endpoint`; every answer, by call name."""
    out, ids = {}, []
    call = lambda key, method, request=b"", timeout=60.0: out.setdefault(
        key, endpoint.call(RUNTIME + method, request, timeout=timeout))
    call("Version", "Version", pb.string(1, "v1"))
    call("Status", "Status")
    config = pod_config(name)
    sandbox = call("RunPodSandbox", "RunPodSandbox", pb.message(1, config))
    pod_id = pb.first(sandbox.body, 1) if sandbox.body else b""
    ids.append(pod_id)
    call("PodSandboxStatus", "PodSandboxStatus", pb.string(1, pod_id))
    container_config = (pb.message(1, pb.string(1, "sleeper")) + pb.message(2, image_spec(image))
                        + pb.string(3, "/bin/busybox") + pb.string(4, "sleep") + pb.string(4, "3600"))
    created = call("CreateContainer", "CreateContainer",
                   pb.string(1, pod_id) + pb.message(2, container_config) + pb.message(3, config))
    container_id = pb.first(created.body, 1) if created.body else b""
    ids.append(container_id)
    target = pb.string(1, container_id)
    call("StartContainer", "StartContainer", target)
    call("ContainerStatus", "ContainerStatus", target)
    call("ListContainers", "ListContainers", pb.message(1, pb.string(3, pod_id)))
    exec_request = target + pb.string(2, "/bin/busybox") + pb.string(2, "echo") + pb.string(2, "hi") + pb.uint(3, 10)
    call("ExecSync", "ExecSync", exec_request)
    call("ContainerStats", "ContainerStats", target)
    call("StopContainer", "StopContainer", target + pb.uint(2, 0))
    call("RemoveContainer", "RemoveContainer", target)
    call("StopPodSandbox", "StopPodSandbox", pb.string(1, pod_id))
    call("RemovePodSandbox", "RemovePodSandbox", pb.string(1, pod_id))
    out["_ids"] = ids
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shim", required=True, help="imageshim's CRI socket")
    parser.add_argument("--direct", required=True, help="the runtime's CRI socket")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--auth-registry", required=True)
    parser.add_argument("--auth-user", required=True)
    parser.add_argument("--silent-registry", required=True,
                        help="accepts connections, never answers: pulls wait for their deadline")
    parser.add_argument("--unpacked-elsewhere", default="",
                        help="a handler whose snapshotter is not the default's (containerd 2.x)")
    parser.add_argument("--no-pods", default="",
                        help="skip the pod lifecycle, saying why (the runtime cannot run pods here)")
    args = parser.parse_args()
    args.auth_password = os.environ["RING_AUTH_PASSWORD"]
    failures = []
    modes = [("default (grpcio sends the %-encoded socket path)", "default", []),
             ("grpc.default_authority=localhost", "localhost", [("grpc.default_authority", "localhost")])]
    for mode, tag, options in modes:
        report = Report(mode)
        report.mode_tag = tag
        direct, shim = Endpoint(args.direct, options), Endpoint(args.shim, options)
        image_calls(report, direct, shim, args)
        runtime_calls(report, direct, shim, args)
        report.print()
        failures += [f"{tag}: {name}" for name in report.failures]
    if failures:
        print("\nDIFFERENT FROM THE RUNTIME:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nall calls answered as the runtime answers them ({grpc.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
