namespace TcpFork;

/// <summary>The parent's warnings that can come once per accept or connection, each rate-limited on its own.</summary>
internal enum Repeat
{
    /// <summary><c>accept: REASON; pausing MS ms</c> (EMFILE, ENFILE, ENOBUFS, ENOMEM): ended by the next accepted connection.</summary>
    AcceptPaused,

    /// <summary><c>accept: REASON</c> (ECONNABORTED…): one per lost connection, interleaved with good ones.</summary>
    AcceptFailed,

    /// <summary><c>unable to fork|spawn|exec PROGRAM: REASON; closed connection from ADDR</c>: ended by the next child started.</summary>
    LaunchFailed,

    /// <summary><c>per-IP table: … refused ADDR (N so far)</c>: one per refused client, interleaved with good ones.</summary>
    TableFull,

    /// <summary><c>P exited S …: a .NET runtime that could not start</c>: ended by the next spawned child that exits otherwise.</summary>
    ChildStartFailed,

    /// <summary><c>proxy header from ADDR: REASON; closed</c>: one per connection closed without its PROXY header (a flood of them, a misconfigured proxy), interleaved with good ones.</summary>
    ProxyHeader,
}

/// <summary>
/// Keeps a warning that repeats from flooding the log (docs/logging.md, "Repeated warnings"): the first
/// of a run is written at once; further ones of the same kind and cause are only counted, and the count
/// is written as one line at most every <see cref="WindowMs"/>, and once more when the run ends — the
/// condition cleared (<see cref="Cleared"/>), the cause changed, or the parent exits. The state lives in
/// parent-only memory and nothing here allocates: it is called once per connection at most.
/// </summary>
internal sealed unsafe class RepeatedWarnings
{
    /// <summary>At most one summary line per kind in this many milliseconds.</summary>
    public const long WindowMs = 10_000;

    private const int Kinds = 6;

    private struct Run
    {
        public bool Active;
        public Errno Cause;
        public long Since;
        public long Count;
    }

    private readonly ServerLog _log;
    private readonly Run* _runs;
    /// <summary>
    /// What failed, for the summary of <see cref="Repeat.LaunchFailed"/> (the launcher's Action), or the
    /// reason of <see cref="Repeat.ProxyHeader"/> (a constant text): held, not copied; part of the cause.
    /// </summary>
    private readonly string?[] _what = new string?[Kinds];

    public RepeatedWarnings(ServerLog log, ParentMemory memory)
    {
        _log = log;
        _runs = memory.Allocate<Run>(Kinds);
    }

    /// <summary>
    /// True when the warning of <paramref name="kind"/> with <paramref name="cause"/> (and <paramref name="what"/>,
    /// compared as text) is to be written now: the first of a run. Otherwise it is counted (and a due
    /// summary written) and the caller writes nothing.
    /// </summary>
    public bool First(Repeat kind, Errno cause, long now, string? what = null)
    {
        ref Run run = ref _runs[(int)kind];
        if (run.Active && run.Count == 0 && now - run.Since >= WindowMs)
        {
            run.Active = false; // a whole window without a repeat: this one starts a new run
        }
        if (run.Active && run.Cause == cause && string.Equals(_what[(int)kind], what, StringComparison.Ordinal))
        {
            run.Count++;
            if (now - run.Since >= WindowMs)
            {
                Summarize(kind, now, RepeatEnd.None);
            }
            return false;
        }
        if (run.Active)
        {
            Summarize(kind, now, RepeatEnd.CauseChanged);
        }
        run.Active = true;
        run.Cause = cause;
        run.Since = now;
        run.Count = 0;
        _what[(int)kind] = what;
        return true;
    }

    /// <summary>The condition behind <paramref name="kind"/> has ended (a connection was accepted, a child started): its count is written, if any.</summary>
    public void Cleared(Repeat kind, long now)
    {
        ref Run run = ref _runs[(int)kind];
        if (run.Active)
        {
            Summarize(kind, now, RepeatEnd.Cleared);
            run.Active = false;
        }
    }

    /// <summary>
    /// Every loop turn: writes the counts that are due, and ends a run that had no repeat for a whole
    /// window (the next one is written at once again). At exit (<paramref name="all"/>): every count.
    /// </summary>
    public void Tick(long now, bool all = false)
    {
        for (int k = 0; k < Kinds; k++)
        {
            ref Run run = ref _runs[k];
            if (!run.Active || !(all || now - run.Since >= WindowMs))
            {
                continue;
            }
            if (run.Count > 0)
            {
                Summarize((Repeat)k, now, RepeatEnd.None);
            }
            else
            {
                run.Active = false;
            }
        }
    }

    /// <summary>The count line of <paramref name="kind"/>, when any were counted; the window starts again.</summary>
    private void Summarize(Repeat kind, long now, RepeatEnd end)
    {
        ref Run run = ref _runs[(int)kind];
        if (run.Count > 0)
        {
            _log.Repeated(kind, _what[(int)kind], run.Cause, run.Count, now - run.Since, end);
        }
        run.Since = now;
        run.Count = 0;
    }
}
