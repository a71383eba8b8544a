namespace TcpFork;

/// <summary>How each connection's process is created.</summary>
public enum ProcessMode
{
    /// <summary>Fork when that is safe (NativeAOT on Linux), otherwise spawn.</summary>
    Auto,

    /// <summary>fork(2): the child is a copy of the parent. NativeAOT only; see docs/fork-safety.md.</summary>
    Fork,

    /// <summary>posix_spawn(3) of this program again, the connection inherited as a descriptor. Works everywhere.</summary>
    Spawn,
}

/// <summary>Options for <see cref="TcpForkServer"/>.</summary>
public sealed class TcpForkServerOptions
{
    /// <summary>Where to listen. Defaults to <c>127.0.0.1:0</c> (an ephemeral port) when empty.</summary>
    public IList<ListenAddress> Listen { get; } = new List<ListenAddress>();

    /// <summary>How children are created. Defaults to <see cref="ProcessMode.Auto"/>.</summary>
    public ProcessMode Mode { get; set; } = ProcessMode.Auto;

    /// <summary>
    /// The most connections served at once; at the limit the listeners are not polled and clients wait
    /// in the kernel's backlog. Defaults to 1000.
    /// </summary>
    public int MaxConnections { get; set; } = 1000;

    /// <summary>The listen(2) backlog. Defaults to 1024.</summary>
    public int Backlog { get; set; } = 1024;

    /// <summary>How long SIGTERM/SIGINT waits for running children before terminating them. Defaults to 10 seconds.</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long children get between SIGTERM and SIGKILL at the end of a drain. Defaults to 2 seconds.</summary>
    public TimeSpan KillGrace { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How long the parent stops accepting after a resource error (EMFILE, a failed fork…). Defaults to 100 ms.</summary>
    public TimeSpan ErrorBackoff { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How much is logged to stderr. Defaults to <see cref="LogLevel.Normal"/>.</summary>
    public LogLevel LogLevel { get; set; } = LogLevel.Normal;

    /// <summary>Whether to print <c>Listening for connections on port N</c> on stdout for each listener. Defaults to true.</summary>
    public bool AnnounceListening { get; set; } = true;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConnections, 1, nameof(MaxConnections));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxConnections, 1_000_000, nameof(MaxConnections));
        ArgumentOutOfRangeException.ThrowIfLessThan(Backlog, 1, nameof(Backlog));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Backlog, 65535, nameof(Backlog));
        ArgumentOutOfRangeException.ThrowIfLessThan(DrainTimeout, TimeSpan.Zero, nameof(DrainTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(KillGrace, TimeSpan.Zero, nameof(KillGrace));
        ArgumentOutOfRangeException.ThrowIfLessThan(ErrorBackoff, TimeSpan.Zero, nameof(ErrorBackoff));
        if (!Enum.IsDefined(Mode))
        {
            throw new ArgumentOutOfRangeException(nameof(Mode), Mode, "unknown process mode");
        }
    }
}
