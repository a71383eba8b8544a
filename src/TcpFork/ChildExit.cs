namespace TcpFork;

/// <summary>How a child ended.</summary>
public readonly struct ChildExit
{
    internal ChildExit(int pid, int status, TimeSpan duration)
    {
        ProcessId = pid;
        int signal = status & 0x7f;
        Signal = signal == 0 ? null : signal;
        ExitCode = signal == 0 ? (status >> 8) & 0xff : null;
        Duration = duration;
    }

    /// <summary>The child's pid.</summary>
    public int ProcessId { get; }

    /// <summary>Its exit status, if it exited.</summary>
    public int? ExitCode { get; }

    /// <summary>The signal that ended it, if one did.</summary>
    public int? Signal { get; }

    /// <summary>How long it ran (millisecond resolution).</summary>
    public TimeSpan Duration { get; }
}
