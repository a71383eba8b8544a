using System.Buffers;
using System.Globalization;
using System.Text;

namespace TcpFork;

/// <summary>
/// One JSON log line written straight into the log buffer: <c>{"ts":"…","event":"NAME"</c>, then a
/// <c>,"name":value</c> per field, then <c>}</c>. Numbers are written as numbers, everything else as a
/// JSON string, escaped (quotes, backslash, control characters; invalid UTF-8 or UTF-16 as U+FFFD).
/// Nothing allocates. A line that does not fit keeps its ts and event and says <c>"truncated":true</c>.
/// </summary>
internal ref struct JsonLine
{
    private readonly Span<byte> _dest;
    private int _pos;
    private readonly int _afterEvent;
    private bool _overflow;

    public JsonLine(Span<byte> dest, ReadOnlySpan<byte> eventName)
    {
        _dest = dest;
        Raw("{\"ts\":\""u8);
        if (_dest.Length - _pos >= ServerLog.TimestampLength)
        {
            _pos += ServerLog.WriteTimestamp(_dest[_pos..]);
        }
        Raw("\",\"event\":\""u8);
        Raw(eventName);
        Raw("\""u8);
        _afterEvent = _pos;
    }

    public void Number(ReadOnlySpan<char> name, long value)
    {
        Name(name);
        if (value.TryFormat(_dest[_pos..], out int n, default, CultureInfo.InvariantCulture))
        {
            _pos += n;
        }
        else
        {
            _overflow = true;
        }
    }

    public void Number(ReadOnlySpan<char> name, double value, ReadOnlySpan<char> format)
    {
        Name(name);
        if (!double.IsFinite(value))
        {
            Raw("null"u8);
        }
        else if (value.TryFormat(_dest[_pos..], out int n, format, CultureInfo.InvariantCulture))
        {
            _pos += n;
        }
        else
        {
            _overflow = true;
        }
    }

    public void String(ReadOnlySpan<char> name, scoped ReadOnlySpan<byte> utf8)
    {
        Name(name);
        Raw("\""u8);
        while (!utf8.IsEmpty && !_overflow)
        {
            if (utf8[0] < 0x80)
            {
                Ascii(utf8[0]);
                utf8 = utf8[1..];
                continue;
            }
            OperationStatus status = Rune.DecodeFromUtf8(utf8, out _, out int n);
            Raw(status == OperationStatus.Done ? utf8[..n] : "\uFFFD"u8);
            utf8 = utf8[n..];
        }
        Raw("\""u8);
    }

    public void String(ReadOnlySpan<char> name, scoped ReadOnlySpan<char> utf16)
    {
        Name(name);
        Raw("\""u8);
        Span<byte> encoded = stackalloc byte[4];
        while (!utf16.IsEmpty && !_overflow)
        {
            if (utf16[0] < 0x80)
            {
                Ascii((byte)utf16[0]);
                utf16 = utf16[1..];
                continue;
            }
            // An unpaired surrogate decodes as U+FFFD.
            Rune.DecodeFromUtf16(utf16, out Rune rune, out int n);
            Raw(encoded[..rune.EncodeToUtf8(encoded)]);
            utf16 = utf16[n..];
        }
        Raw("\""u8);
    }

    public void String(ReadOnlySpan<char> name, in SockAddr address)
    {
        Span<byte> text = stackalloc byte[128];
        String(name, address.TryFormat(text, out int n, default, null) ? text[..n] : "?"u8);
    }

    /// <summary>Closes the object; the line's length.</summary>
    public int Finish()
    {
        if (_overflow)
        {
            _pos = _afterEvent;
            _overflow = false;
            Raw(",\"truncated\":true"u8);
        }
        Raw("}"u8);
        return _pos;
    }

    private void Name(ReadOnlySpan<char> name)
    {
        Raw(",\""u8);
        if (_dest.Length - _pos < name.Length)
        {
            _overflow = true;
            return;
        }
        foreach (char c in name)
        {
            _dest[_pos++] = (byte)c; // field names are ASCII constants in ServerLog.Events.cs
        }
        Raw("\":"u8);
    }

    private void Ascii(byte b)
    {
        switch (b)
        {
            case (byte)'"': Raw("\\\""u8); break;
            case (byte)'\\': Raw("\\\\"u8); break;
            case (byte)'\n': Raw("\\n"u8); break;
            case (byte)'\r': Raw("\\r"u8); break;
            case (byte)'\t': Raw("\\t"u8); break;
            case < 0x20 or 0x7f:
                Span<byte> u = stackalloc byte[6];
                "\\u00"u8.CopyTo(u);
                u[4] = HexDigit(b >> 4);
                u[5] = HexDigit(b & 0xf);
                Raw(u);
                break;
            default:
                Raw([b]);
                break;
        }
    }

    private static byte HexDigit(int d) => (byte)(d < 10 ? '0' + d : 'a' + d - 10);

    private void Raw(scoped ReadOnlySpan<byte> bytes)
    {
        // The last bytes stay free for the closing brace after a truncation.
        if (_overflow || _dest.Length - _pos - bytes.Length < 32)
        {
            _overflow = true;
            return;
        }
        bytes.CopyTo(_dest[_pos..]);
        _pos += bytes.Length;
    }
}
