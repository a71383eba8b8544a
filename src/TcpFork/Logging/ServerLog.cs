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

    public ServerLog(LogLevel level, int fd = 2)
    {
        Level = level;
        _fd = fd;
    }

    public LogLevel Level { get; }

    private Span<byte> Buffer => new(_buffer, Size);

    public bool IsNormal => Level >= LogLevel.Normal;

    public bool IsVerbose => Level >= LogLevel.Verbose;

    /// <summary>Space to format the next line into (after the prefix).</summary>
    private Span<byte> Begin()
    {
        if (_length > FlushAt)
        {
            Flush();
        }
        PrefixUtf8.CopyTo(Buffer[_length..]);
        return Buffer.Slice(_length + PrefixUtf8.Length, Size - _length - PrefixUtf8.Length - 1);
    }

    private void Commit(bool formatted, int written)
    {
        if (!formatted)
        {
            ReadOnlySpan<byte> tooLong = "(line too long)"u8;
            tooLong.CopyTo(Buffer[(_length + PrefixUtf8.Length)..]);
            written = tooLong.Length;
        }
        _length += PrefixUtf8.Length + written;
        _buffer[_length++] = (byte)'\n';
        // A child (forked, or the library in a spawned one) writes each line at once: it ends in _exit.
        if (Interop.GetPid() != _owner || ChildLineByLine)
        {
            Flush();
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

    /// <summary>Writes one line, formatted straight into the buffer: <c>Write($"end {pid} status {s}")</c>; only the event methods call it.</summary>
    private void Write([System.Runtime.CompilerServices.InterpolatedStringHandlerArgument("")] ref LineHandler line) => line.Finish();

    /// <summary>Formats one line straight into the log buffer; see <see cref="Write(ref LineHandler)"/>.</summary>
    [System.Runtime.CompilerServices.InterpolatedStringHandler]
    public ref struct LineHandler
    {
        private readonly ServerLog _log;
        private Utf8.TryWriteInterpolatedStringHandler _inner;
        private readonly Span<byte> _dest;

        public LineHandler(int literalLength, int formattedCount, ServerLog log, out bool shouldAppend)
        {
            _log = log;
            _dest = log.Begin();
            _inner = new Utf8.TryWriteInterpolatedStringHandler(literalLength, formattedCount, _dest, out shouldAppend);
            _pending = true;
        }

        private bool _pending;

        public bool AppendLiteral(string s) => _inner.AppendLiteral(s);

        public bool AppendFormatted<T>(T value) => _inner.AppendFormatted(value);

        public bool AppendFormatted<T>(T value, string? format) => _inner.AppendFormatted(value, format);

        public bool AppendFormatted(scoped ReadOnlySpan<byte> utf8) => _inner.AppendFormatted(utf8);

        public bool AppendFormatted(scoped ReadOnlySpan<char> s) => _inner.AppendFormatted(s);

        public bool AppendFormatted(string? s) => _inner.AppendFormatted(s);

        /// <summary>Commits the formatted line to the buffer.</summary>
        internal void Finish()
        {
            if (_pending)
            {
                bool ok = Utf8.TryWrite(_dest, ref _inner, out int written);
                _log.Commit(ok, written);
                _pending = false;
            }
        }
    }
}
