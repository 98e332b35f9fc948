# NBD protocol cases against rewind-mtd, driven through libnbd (nbdsh's Python module).
#
# Run by mtd/tests/nbd.rs as
#   PATH=/usr/bin:$PATH nbdsh -n -c "exec(open('scripts/nbdsh_cases.py').read())"
# with its inputs in the environment:
#   NBD_SOCK        the daemon's NBD unix socket
#   NBD_MODE        "readonly" or "overlay"
#   readonly:  RO_EXPORT (a fixed point, e.g. g/sda@seq:100), RO_IMAGE (a dump of that point),
#              LATEST_EXPORT (g/sda), LATEST_OUT (where to write what latest read as)
#   overlay:   OV_EXPORT (g/sda@overlay:NAME, fresh), OV_IMAGE (a dump of the point under it)
# Prints "ok CASE" per case and "latest_seq N" (readonly); any failure raises (non-zero exit).

import errno
import os
import re

import nbd

SOCK = os.environ["NBD_SOCK"]
MODE = os.environ["NBD_MODE"]


def handle(export=None, opt_mode=False, structured=True, meta=True, strict=True):
    h = nbd.NBD()
    if meta:
        h.add_meta_context("base:allocation")
    h.set_request_structured_replies(structured)
    h.set_full_info(True)
    if not strict:
        # Let requests the client library would refuse reach the server.
        h.set_strict_mode(0)
    if opt_mode:
        h.set_opt_mode(True)
        h.connect_unix(SOCK)
    else:
        h.set_export_name(export)
        h.connect_unix(SOCK)
    return h


def expect_error(fn, want, what):
    try:
        fn()
    except nbd.Error as e:
        assert e.errnum == want, "%s: errno %s (%s), want %s" % (
            what, e.errnum, e.string, errno.errorcode[want])
        return e
    raise AssertionError("%s: succeeded, want %s" % (what, errno.errorcode[want]))


def read_all_aio(h, size, chunk=64 * 1024, depth=64):
    """Read the whole export with up to `depth` requests in flight; returns the bytes."""
    out = bytearray(size)
    pending = {}
    offset = 0
    max_seen = 0
    while offset < size or pending:
        while offset < size and len(pending) < depth:
            n = min(chunk, size - offset)
            buf = nbd.Buffer(n)
            cookie = h.aio_pread(buf, offset)
            pending[cookie] = (offset, buf)
            offset += n
        max_seen = max(max_seen, h.aio_in_flight())
        h.poll(-1)
        for cookie in list(pending):
            if h.aio_command_completed(cookie):
                off, buf = pending.pop(cookie)
                b = buf.to_bytearray()
                out[off:off + len(b)] = b
    return bytes(out), max_seen


def extents(h, size, flags=0):
    """The base:allocation map of the whole export, as (offset, length, flags)."""
    got = []
    offset = 0
    while offset < size:
        entries = []

        def cb(metacontext, off, e, err):
            assert metacontext == "base:allocation", metacontext
            entries.extend(e)
            return 0

        h.block_status(size - offset, offset, cb, flags)
        assert entries and len(entries) % 2 == 0, entries
        for i in range(0, len(entries), 2):
            length, fl = entries[i], entries[i + 1]
            assert length > 0
            length = min(length, size - offset)
            got.append((offset, length, fl))
            offset += length
            if offset >= size:
                break
    return got


def readonly_cases():
    ro, image = os.environ["RO_EXPORT"], open(os.environ["RO_IMAGE"], "rb").read()
    latest = os.environ["LATEST_EXPORT"]
    size = len(image)

    # Option haggling on one connection: a bad name fails and the connection stays usable.
    h = handle(opt_mode=True)
    names = []
    h.opt_list(lambda name, desc: names.append(name) or 0)
    assert latest in names, names
    for bad in ["nope/sda", "g/sdz", "g/sda@seq:999999999", "g/sda@nonsense", "", "g"]:
        h.set_export_name(bad)
        expect_error(h.opt_info, errno.ENOENT, "opt_info %r" % bad)
        expect_error(h.opt_go, errno.ENOENT, "opt_go %r" % bad)
    h.set_export_name(ro)
    h.opt_info()
    assert h.get_size() == size, (h.get_size(), size)
    assert h.is_read_only()
    assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
    assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
    assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 << 20
    assert "read-only" in h.get_export_description(), h.get_export_description()
    contexts = []
    h.opt_list_meta_context(lambda name: contexts.append(name) or 0)
    assert contexts == ["base:allocation"], contexts
    h.opt_go()
    assert h.get_structured_replies_negotiated()
    assert h.can_meta_context("base:allocation")
    assert h.can_multi_conn() and h.can_flush() and h.can_fua() and h.can_df()
    assert not h.can_trim() and not h.can_zero()
    assert h.pread(4096, 0) == image[:4096]
    assert h.pread(10000, size - 10000) == image[-10000:]
    chunks = []
    h.pread_structured(100, 12345, lambda sub, off, st, err: chunks.append((off, st)) or 0,
                       nbd.CMD_FLAG_DF)
    assert chunks == [(12345, nbd.READ_DATA)], chunks
    h.flush()
    h.shutdown()
    print("ok options")

    # Errors reach the server (strict mode off) and come back as the right errno; the
    # connection keeps working after each.
    for structured in [True, False]:
        h = handle(ro, structured=structured, meta=structured, strict=False)
        assert h.get_structured_replies_negotiated() == structured
        expect_error(lambda: h.pread(4096, size), errno.EINVAL, "read past the end")
        expect_error(lambda: h.pread(8192, size - 4096), errno.EINVAL, "read across the end")
        expect_error(lambda: h.pread(4096, (1 << 64) - 4096), errno.EINVAL, "offset overflow")
        expect_error(lambda: h.pwrite(b"x" * 4096, 0), errno.EPERM, "write to a point")
        expect_error(lambda: h.trim(4096, 0), errno.EPERM, "trim of a point")
        expect_error(lambda: h.zero(4096, 0), errno.EPERM, "zero of a point")
        expect_error(lambda: h.pread((32 << 20) + 1, 0), errno.EINVAL, "read over the maximum")
        if not structured:
            expect_error(lambda: h.block_status(4096, 0, lambda *a: 0), errno.EINVAL,
                         "block status without a meta context")
        assert h.pread(4096, 8192) == image[8192:12288]
        h.shutdown()
    print("ok errors")

    # Block status agrees with the bytes: every hole/zero extent reads as zeroes, and there are
    # both kinds in a randomly written disk.
    h = handle(ro)
    m = extents(h, size)
    assert sum(l for _, l, _ in m) == size
    kinds = set()
    for off, length, fl in m:
        if fl & nbd.STATE_ZERO:
            assert image[off:off + length] == bytes(length), "extent %d+%d not zero" % (off, length)
            assert fl & nbd.STATE_HOLE
            kinds.add("zero")
        else:
            assert fl == 0, fl
            kinds.add("data")
    assert kinds == {"zero", "data"}, kinds
    # REQ_ONE: one extent, no longer than asked.
    for off, _, fl in m[:20]:
        entries = []
        h.block_status(1 << 20, off, lambda c, o, e, err: entries.extend(e) or 0,
                       nbd.CMD_FLAG_REQ_ONE)
        assert len(entries) == 2 and 0 < entries[0] <= 1 << 20, entries
        assert entries[1] == fl, (entries, fl)
    print("ok block_status (%d extents)" % len(m))

    # Many reads in flight, completing in any order, all correct.
    data, max_seen = read_all_aio(h, size, chunk=48 * 1024 + 512, depth=64)
    assert data == image
    assert max_seen > 8, max_seen
    h.shutdown()
    print("ok aio (%d in flight)" % max_seen)

    # The latest export is frozen at the seq it had when this connection opened it, however much
    # replication writes meanwhile; the test checks the bytes against the model at that seq.
    h = handle(latest)
    desc = h.get_export_description()
    seq = int(re.search(r"seq (\d+)", desc).group(1))
    data, _ = read_all_aio(h, h.get_size())
    open(os.environ["LATEST_OUT"], "wb").write(data)
    h.shutdown()
    print("latest_seq %d" % seq)
    print("ok latest")


def overlay_cases():
    ov, image = os.environ["OV_EXPORT"], open(os.environ["OV_IMAGE"], "rb").read()
    size = len(image)
    h = handle(ov, strict=False)
    assert not h.is_read_only()
    assert h.can_trim() and h.can_zero() and h.can_fast_zero() and h.can_fua()
    assert h.can_flush() and h.can_multi_conn()
    assert h.pread(65536, 0) == image[:65536], "a fresh overlay reads as its point"
    model = bytearray(image)

    def write(off, data, flags=0):
        h.pwrite(data, off, flags)
        model[off:off + len(data)] = data

    write(1000, bytes(range(256)) * 40, nbd.CMD_FLAG_FUA)  # unaligned, FUA
    write(1 << 20, b"\xab" * (1 << 20))
    h.flush()
    assert h.pread(20000, 0) == bytes(model[:20000])

    h.zero(1 << 18, 1 << 20, nbd.CMD_FLAG_FAST_ZERO)
    model[1 << 20:(1 << 20) + (1 << 18)] = bytes(1 << 18)
    h.zero(3000, 100, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
    model[100:3100] = bytes(3000)
    expect_error(lambda: h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE),
                 errno.ENOTSUP, "fast zero that cannot be fast")
    h.trim(1 << 19, (1 << 20) + (1 << 19))
    model[(1 << 20) + (1 << 19):2 << 20] = bytes(1 << 19)
    assert h.pread(2 << 20, 0) == bytes(model[:2 << 20])
    m = extents(h, size)
    for off, length, fl in m:
        if fl & nbd.STATE_ZERO:
            assert model[off:off + length] == bytes(length), "extent %d+%d not zero" % (off, length)
    trimmed = [e for e in m if e[0] <= (1 << 20) + (1 << 19) < e[0] + e[1]]
    assert trimmed and trimmed[0][2] & nbd.STATE_ZERO, trimmed

    expect_error(lambda: h.pwrite(b"x" * 4096, size), errno.ENOSPC, "write past the end")
    expect_error(lambda: h.zero(4096, size - 1), errno.ENOSPC, "zero past the end")
    expect_error(lambda: h.trim(4096, size), errno.EINVAL, "trim past the end")
    # Over the maximum block size: the payload is skipped, the request refused, and the
    # connection goes on.
    expect_error(lambda: h.pwrite(b"x" * ((32 << 20) + 1), 0), errno.EINVAL,
                 "write over the maximum")
    assert h.pread(4096, 0) == bytes(model[:4096])

    # Many writes in flight, then the reads see them, on this and on a second connection.
    pending = []
    for i in range(256):
        off = (3 << 20) + i * 12288 + (i % 7) * 512
        data = bytes([i % 251]) * 8192
        buf = nbd.Buffer.from_bytearray(bytearray(data))
        pending.append(h.aio_pwrite(buf, off))
        model[off:off + len(data)] = data
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for c in pending:
        assert h.aio_command_completed(c)
    h.flush()
    data, _ = read_all_aio(h, size)
    assert data == bytes(model)
    h2 = handle(ov)
    data2, _ = read_all_aio(h2, size)
    assert data2 == bytes(model), "a second connection sees the writes"
    h2.shutdown()
    h.shutdown()
    print("ok overlay")


if MODE == "readonly":
    readonly_cases()
elif MODE == "overlay":
    overlay_cases()
else:
    raise SystemExit("NBD_MODE must be readonly or overlay")
