namespace TcpFork;

/// <summary>Creates the child process for one accepted connection.</summary>
internal interface ILauncher : IDisposable
{
    /// <summary>What a launch does, for the start line and when it fails: <c>fork</c>, <c>spawn</c>, <c>exec PROGRAM</c>.</summary>
    string Action { get; }

    /// <summary>True when children need the connection's local address (exec's TCPLOCALIP); the parent reads it then.</summary>
    bool NeedsLocalAddress => false;

    /// <summary>
    /// The exit status of a child whose .NET runtime could not start (before Main: no thread, no memory),
    /// for a launcher whose children start a runtime of their own; -1 otherwise.
    /// </summary>
    int StartFailureStatus => -1;

    /// <summary>
    /// Starts a child serving <paramref name="fd"/> (which the caller closes afterwards); returns its pid,
    /// or -1 with <paramref name="error"/> set. Must not allocate: it runs once per connection.
    /// </summary>
    int Launch(int fd, in Accepted connection, out Errno error);
}
