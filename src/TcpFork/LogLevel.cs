namespace TcpFork;

/// <summary>How much tcpfork writes to stderr.</summary>
public enum LogLevel
{
    /// <summary>Errors and fatal errors only (<c>-q</c>).</summary>
    Quiet,

    /// <summary>Start, stop, status, one line when a child starts and one when it ends.</summary>
    Normal,

    /// <summary>Also each child's progress lines (<c>-v</c>).</summary>
    Verbose,
}
