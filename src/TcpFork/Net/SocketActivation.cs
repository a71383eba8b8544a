using System.Globalization;

namespace TcpFork;

/// <summary>
/// systemd's socket activation protocol (sd_listen_fds(3)): the service manager passes listening sockets
/// from descriptor 3 on, with LISTEN_FDS (how many), LISTEN_PID (for which process: a variable inherited
/// by some other process is not an offer to this one) and LISTEN_FDNAMES (their names, colon-separated).
/// An upgrade (docs/upgrade.md) hands a new parent its predecessor's listeners the same way, with
/// <see cref="UpgradeVariable"/> in place of LISTEN_PID (the old parent cannot know the new one's pid
/// before spawning it): <c>OLDPID:READYFD</c>, addressed to the process whose parent is OLDPID; an empty
/// name marks a socket tcpfork opened itself (its unix file is then the new parent's to remove).
/// </summary>
internal static class SocketActivation
{
    public const int FirstFd = 3;
    public const string UpgradeVariable = "TCPFORK_UPGRADE";
    private static readonly string[] s_variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", UpgradeVariable];

    /// <summary>
    /// The descriptors and names passed to this process, or none; removes the variables from the
    /// environment either way, so no child sees them: the managed copy, which children's environments are
    /// built from, and the C library's, which native code in a forked child reads. A name is null for a
    /// socket an upgraded predecessor opened itself. <paramref name="readyFd"/> is the upgrade's readiness
    /// pipe (close-on-exec from here on), or -1 when this is no upgrade. Socket activation proper is
    /// taken only with <paramref name="activation"/>; an upgrade's hand-over always.
    /// Throws <see cref="ArgumentException"/> for malformed values addressed to this process.
    /// </summary>
    public static (int Fd, string? Name)[] Take(bool activation, out int readyFd)
    {
        string? pid = Environment.GetEnvironmentVariable("LISTEN_PID");
        string? count = Environment.GetEnvironmentVariable("LISTEN_FDS");
        string? names = Environment.GetEnvironmentVariable("LISTEN_FDNAMES");
        string? upgrade = Environment.GetEnvironmentVariable(UpgradeVariable);
        InheritedVariables.Remove(s_variables);
        readyFd = -1;
        bool handedOver = UpgradeFor(upgrade, out int ready);
        if (count is null || !(handedOver || (activation && pid is not null
            && int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int forPid) && forPid == Interop.GetPid())))
        {
            return [];
        }
        if (!int.TryParse(count, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n > 4096)
        {
            throw new ArgumentException($"socket activation: LISTEN_FDS must be a number of descriptors, not '{count}'");
        }
        if (handedOver)
        {
            Interop.Check(Interop.SetCloseOnExecNonBlocking(ready), "fcntl");
            readyFd = ready;
        }
        string[] given = names?.Split(':') ?? [];
        var fds = new (int, string?)[n];
        for (int i = 0; i < n; i++)
        {
            string? name = given.Length == n && given[i].Length > 0 ? given[i] : null;
            // sd_listen_fds' default name for a socket without one.
            fds[i] = (FirstFd + i, name ?? (handedOver ? null : "unknown"));
        }
        return fds;
    }

    /// <summary>True when <paramref name="value"/> (TCPFORK_UPGRADE) is addressed to this process: its parent is the old parent named.</summary>
    private static bool UpgradeFor(string? value, out int readyFd)
    {
        readyFd = -1;
        string[] parts = value?.Split(':') ?? [];
        return parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int from) && from == Interop.GetPPid()
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out readyFd) && readyFd >= FirstFd;
    }
}
