namespace TcpFork;

/// <summary>How much tcpfork writes to stderr.</summary>
public enum LogLevel
{
    /// <summary>Warnings and errors only (<c>-q</c>).</summary>
    Quiet,

    /// <summary>Also the server's own events: start, stop, exit, timeouts, rule reloads, stats; nothing per connection, as tcpserver without <c>-v</c>.</summary>
    Normal,

    /// <summary>Also a line at each connection's start and end (tcpserver's <c>-v</c> lines) and the echo children's progress (<c>-v</c>).</summary>
    Verbose,
}
