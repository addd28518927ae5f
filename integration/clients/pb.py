"""Just enough protobuf wire format for CRI requests and answers, written from the wire
rules (varints, length-delimited fields) and CRI v1 field numbers, so ring 4 needs no
generated code of ours: requests are built field by field, answers compared as bytes or
as decoded field lists."""


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string(number, value):
    """A length-delimited field (string, bytes or an encoded message)."""
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def message(number, *parts):
    return string(number, b"".join(parts))


def uint(number, value):
    return varint(number << 3) + varint(value)


def entry(number, key, value):
    """One map<string,string> entry."""
    return message(number, string(1, key), string(2, value))


def _read_varint(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def fields(data):
    """The top-level fields of a message: a list of (number, wire type, value)."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, pos = _read_varint(data, pos)
        elif kind == 2:
            length, pos = _read_varint(data, pos)
            value, pos = bytes(data[pos:pos + length]), pos + length
        elif kind == 1:
            value, pos = bytes(data[pos:pos + 8]), pos + 8
        elif kind == 5:
            value, pos = bytes(data[pos:pos + 4]), pos + 4
        else:
            raise ValueError(f"wire type {kind} at {pos}")
        out.append((number, kind, value))
    return out


def first(data, *path):
    """The value at a path of field numbers (first occurrence at each level)."""
    for number in path:
        matches = [v for n, _, v in fields(data) if n == number]
        if not matches:
            return None
        data = matches[0]
    return data


def without(data, *numbers):
    """The message re-encoded without the given top-level fields (order kept)."""
    out = b""
    for number, kind, value in fields(data):
        if number in numbers:
            continue
        if kind == 0:
            out += uint(number, value)
        elif kind == 2:
            out += string(number, value)
        else:
            out += varint(number << 3 | kind) + value
    return out
