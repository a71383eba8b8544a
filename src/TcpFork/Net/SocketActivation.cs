using System.Globalization;

namespace TcpFork;

/// <summary>
/// systemd's socket activation protocol (sd_listen_fds(3)): the service manager passes listening sockets
/// from descriptor 3 on, with LISTEN_FDS (how many), LISTEN_PID (for which process: a variable inherited
/// by some other process is not an offer to this one) and LISTEN_FDNAMES (their names, colon-separated).
/// </summary>
internal static class SocketActivation
{
    private const int FirstFd = 3;
    private static readonly string[] s_variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

    /// <summary>
    /// The descriptors and names passed to this process, or none; removes the three variables from the
    /// environment either way, so no child sees them: the managed copy, which children's environments are
    /// built from, and the C library's, which native code in a forked child reads.
    /// Throws <see cref="ArgumentException"/> for malformed values addressed to this process.
    /// </summary>
    public static (int Fd, string Name)[] Take()
    {
        string? pid = Environment.GetEnvironmentVariable("LISTEN_PID");
        string? count = Environment.GetEnvironmentVariable("LISTEN_FDS");
        string? names = Environment.GetEnvironmentVariable("LISTEN_FDNAMES");
        InheritedVariables.Remove(s_variables);
        if (pid is null || count is null
            || !int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int forPid) || forPid != Interop.GetPid())
        {
            return [];
        }
        if (!int.TryParse(count, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n > 4096)
        {
            throw new ArgumentException($"socket activation: LISTEN_FDS must be a number of descriptors, not '{count}'");
        }
        string[] given = names?.Split(':') ?? [];
        var fds = new (int, string)[n];
        for (int i = 0; i < n; i++)
        {
            // sd_listen_fds' default name for a socket without one.
            fds[i] = (FirstFd + i, given.Length == n && given[i].Length > 0 ? given[i] : "unknown");
        }
        return fds;
    }
}
