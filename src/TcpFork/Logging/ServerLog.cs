using System.Text.Unicode;

namespace TcpFork;

/// <summary>
/// The event log on stderr: one event a line, each beginning <c>tcpfork: </c>, fixed formats listed in
/// docs/logging.md. Lines are formatted into one preallocated buffer and written with write(2):
/// nothing here allocates, so the parent can log every connection and still allocate 0 bytes.
/// The parent flushes once per loop turn and before every fork; a child writes each line at once.
/// </summary>
internal sealed unsafe class ServerLog
{
    private const int FlushAt = 48 * 1024;
    private const int Size = 64 * 1024;

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

    /// <summary>Space to format the next line into (after the <c>tcpfork: </c> prefix).</summary>
    private Span<byte> Begin()
    {
        if (_length > FlushAt)
        {
            Flush();
        }
        "tcpfork: "u8.CopyTo(Buffer[_length..]);
        return Buffer.Slice(_length + 9, Size - _length - 10);
    }

    private void Commit(bool formatted, int written)
    {
        if (!formatted)
        {
            "(line too long)"u8.CopyTo(Buffer[(_length + 9)..]);
            written = 15;
        }
        _length += 9 + written;
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

    /// <summary>
    /// <c>warning: the HOOK hook threw TYPE: MESSAGE; CONSEQUENCE</c> — a Verify or ChildExited hook threw
    /// in the parent (logged once per hook and exception type; the message's first line only).
    /// </summary>
    public void HookThrew(string hook, Exception e, string consequence)
    {
        ReadOnlySpan<char> message = e.Message;
        int end = message.IndexOfAny('\r', '\n');
        Write($"warning: the {hook} hook threw {e.GetType().Name}: {(end < 0 ? message : message[..end])}; {consequence}");
    }

    /// <summary><c>error: PID: handler exceeded the memory limit (N bytes)</c> — a child's handler ran out of the memory <see cref="ChildLimits.AddressSpace"/> gave it; the child exits 1.</summary>
    public void MemoryLimitExceeded(long bytes) => Write($"error: {Interop.GetPid()}: handler exceeded the memory limit ({bytes} bytes)");

    /// <summary>Writes one line, formatted straight into the buffer: <c>log.Write($"end {pid} status {s}")</c>.</summary>
    public void Write([System.Runtime.CompilerServices.InterpolatedStringHandlerArgument("")] ref LineHandler line) => line.Finish();

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
