using System.Text.Unicode;

namespace TcpFork;

/// <summary>
/// The event log on stderr: one event a line, each beginning <see cref="Prefix"/>, in the fixed formats
/// of ServerLog.Events.cs (listed in docs/logging.md). Lines are formatted into one preallocated buffer
/// and written with write(2): nothing here allocates, so the parent can log every connection and still
/// allocate 0 bytes. The parent flushes once per loop turn and before every fork; a child writes each
/// line at once.
/// </summary>
internal sealed unsafe partial class ServerLog
{
    private const int FlushAt = 48 * 1024;
    private const int Size = 64 * 1024;
    private static readonly byte[] s_prefix = System.Text.Encoding.UTF8.GetBytes(Prefix);

    private static ReadOnlySpan<byte> PrefixUtf8 => s_prefix;

    // In parent-only memory: the parent's lines are no business of a forked child's.
    private readonly byte* _buffer = new ParentMemory().Allocate<byte>(Size);
    private int _length;
    private readonly int _fd;
    private readonly int _owner = Interop.GetPid();

    public ServerLog(LogLevel level, int fd = 2, LogFormat format = LogFormat.Text, bool timestamps = false)
    {
        Level = level;
        _fd = fd;
        Format = format;
        Timestamps = timestamps;
        // The first number formatted with a fraction into UTF-8 makes NumberFormatInfo cache its decimal
        // separator's UTF-8 bytes (32 bytes, once): here, before the parent's loop, not at the first
        // "repeated N times in the last 0.1 s" it writes while serving.
        Span<byte> warm = stackalloc byte[8];
        0.5.TryFormat(warm, out _, "0.#", null);
        0.5.TryFormat(warm, out _, "0.#", System.Globalization.CultureInfo.InvariantCulture);
    }

    public LogLevel Level { get; }

    /// <summary>Text lines (<c>tcpfork: …</c>) or one JSON object a line.</summary>
    public LogFormat Format { get; }

    /// <summary>Text lines start with the time (JSON lines always carry it, as <c>ts</c>).</summary>
    public bool Timestamps { get; }

    private Span<byte> Buffer => new(_buffer, Size);

    public bool IsNormal => Level >= LogLevel.Normal;

    public bool IsVerbose => Level >= LogLevel.Verbose;

    /// <summary>Space to format the next line into; in text, <paramref name="header"/> bytes of it (the time, the prefix) already written.</summary>
    private Span<byte> Begin(out int header)
    {
        if (_length > FlushAt)
        {
            Flush();
        }
        Span<byte> line = Buffer.Slice(_length, Size - _length - 1);
        header = 0;
        if (Format == LogFormat.Text)
        {
            if (Timestamps)
            {
                header = WriteTimestamp(line);
                line[header++] = (byte)' ';
            }
            PrefixUtf8.CopyTo(line[header..]);
            header += PrefixUtf8.Length;
        }
        return line;
    }

    private void Commit(int written)
    {
        _length += written;
        _buffer[_length++] = (byte)'\n';
        // A child (forked, or the library in a spawned one) writes each line at once: it ends in _exit.
        if (Interop.GetPid() != _owner || ChildLineByLine)
        {
            Flush();
        }
    }

    /// <summary>The length of <see cref="WriteTimestamp"/>'s text.</summary>
    public const int TimestampLength = 24;

    /// <summary>The time now, RFC 3339 in UTC with milliseconds (<c>2026-11-27T04:12:49.123Z</c>), without allocating.</summary>
    public static int WriteTimestamp(Span<byte> dest)
    {
        DateTime now = DateTime.UtcNow;
        Digits(dest[0..4], now.Year);
        dest[4] = (byte)'-';
        Digits(dest[5..7], now.Month);
        dest[7] = (byte)'-';
        Digits(dest[8..10], now.Day);
        dest[10] = (byte)'T';
        Digits(dest[11..13], now.Hour);
        dest[13] = (byte)':';
        Digits(dest[14..16], now.Minute);
        dest[16] = (byte)':';
        Digits(dest[17..19], now.Second);
        dest[19] = (byte)'.';
        Digits(dest[20..23], now.Millisecond);
        dest[23] = (byte)'Z';
        return TimestampLength;

        static void Digits(Span<byte> d, int value)
        {
            for (int i = d.Length - 1; i >= 0; i--, value /= 10)
            {
                d[i] = (byte)('0' + (value % 10));
            }
        }
    }

    public void Flush()
    {
        if (_length > 0)
        {
            Interop.WriteAll(_fd, Buffer[.._length]);
            _length = 0;
        }
    }

    /// <summary>Drops whatever the parent had not yet written (a new child must not repeat it); writes nothing if empty.</summary>
    public void Discard()
    {
        if (_length != 0)
        {
            _length = 0;
        }
    }

    /// <summary>True in a spawned child, whose log object was made in its own process.</summary>
    public bool ChildLineByLine { get; set; }

    /// <summary>
    /// Writes one event, formatted straight into the buffer: <c>Write("end"u8, $"end {pid:pid} status {code:status}")</c>;
    /// only the event methods call it. In text the line is the interpolated string (a hole's format is its
    /// field's name, and <c>name|format</c> also formats a number); in JSON it is <paramref name="name"/> as
    /// <c>event</c> and each named hole as a field. A hole without a name is text only: a part of the line
    /// its format spells out (LogFormatTests checks that the text without the fields is the format's literals).
    /// </summary>
    private void Write(ReadOnlySpan<byte> name, [System.Runtime.CompilerServices.InterpolatedStringHandlerArgument("", "name")] ref LineHandler line) => line.Finish();

    /// <summary>Formats one event straight into the log buffer, as text or JSON; see <see cref="Write"/>.</summary>
    [System.Runtime.CompilerServices.InterpolatedStringHandler]
    public ref struct LineHandler
    {
        private readonly ServerLog _log;
        private readonly bool _json;
        private readonly Span<byte> _line;
        private readonly int _header;
        private Utf8.TryWriteInterpolatedStringHandler _text;
        private JsonLine _fields;
        private bool _pending;

        public LineHandler(int literalLength, int formattedCount, ServerLog log, ReadOnlySpan<byte> name, out bool shouldAppend)
        {
            _log = log;
            _line = log.Begin(out _header);
            _json = log.Format == LogFormat.Json;
            if (_json)
            {
                _fields = new JsonLine(_line, name);
                shouldAppend = true;
            }
            else
            {
                _text = new Utf8.TryWriteInterpolatedStringHandler(literalLength, formattedCount, _line[_header..], out shouldAppend);
            }
            _pending = true;
        }

        public bool AppendLiteral(string s) => _json || _text.AppendLiteral(s);

        public bool AppendFormatted(int value, string? format = null) => AppendFormatted((long)value, format);

        public bool AppendFormatted(long value, string? format = null)
        {
            if (!_json)
            {
                return _text.AppendFormatted(value);
            }
            if (format is not null)
            {
                _fields.Number(format, value);
            }
            return true;
        }

        public bool AppendFormatted(double value, string? format = null)
        {
            // "name|format": the field's name, then the number's format.
            ReadOnlySpan<char> field = format, numberFormat = default;
            int bar = field.IndexOf('|');
            if (bar >= 0)
            {
                numberFormat = field[(bar + 1)..];
                field = field[..bar];
            }
            if (_json)
            {
                if (format is not null)
                {
                    _fields.Number(field, value, numberFormat);
                }
                return true;
            }
            Span<byte> text = stackalloc byte[64];
            return value.TryFormat(text, out int n, numberFormat, null) && _text.AppendFormatted(text[..n]);
        }

        public bool AppendFormatted(scoped ReadOnlySpan<byte> utf8, string? format = null)
        {
            if (!_json)
            {
                return _text.AppendFormatted(utf8);
            }
            if (format is not null)
            {
                _fields.String(format, utf8);
            }
            return true;
        }

        public bool AppendFormatted(scoped ReadOnlySpan<char> s, string? format = null)
        {
            if (!_json)
            {
                return _text.AppendFormatted(s);
            }
            if (format is not null)
            {
                _fields.String(format, s);
            }
            return true;
        }

        public bool AppendFormatted(string? s, string? format = null) => AppendFormatted(s.AsSpan(), format);

        public bool AppendFormatted(in SockAddr address, string? format = null)
        {
            if (!_json)
            {
                return _text.AppendFormatted(address);
            }
            if (format is not null)
            {
                _fields.String(format, address);
            }
            return true;
        }

        /// <summary>Commits the formatted line to the buffer.</summary>
        internal void Finish()
        {
            if (!_pending)
            {
                return;
            }
            _pending = false;
            if (_json)
            {
                _log.Commit(_fields.Finish());
                return;
            }
            if (!Utf8.TryWrite(_line[_header..], ref _text, out int written))
            {
                ReadOnlySpan<byte> tooLong = "(line too long)"u8;
                tooLong.CopyTo(_line[_header..]);
                written = tooLong.Length;
            }
            _log.Commit(_header + written);
        }
    }
}
