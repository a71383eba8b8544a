using System.Globalization;

namespace TcpFork;

/// <summary>
/// The hidden child role of spawn mode: the parent re-runs this same program with the connection on
/// descriptor 3 and these variables set; <see cref="TcpForkServer.Run"/> sees them and serves that one
/// connection instead of listening.
/// </summary>
internal static class ChildRole
{
    public const string FdVariable = "TCPFORK_CHILD_FD";
    public const string ConnectionVariable = "TCPFORK_CONNECTION";
    public const string FromSameIpVariable = "TCPFORK_FROM_SAME_IP";
    public const string SettingsVariable = "TCPFORK_CHILD_SETTINGS";

    /// <summary>
    /// What a spawned child needs from the parent's options: <c>log=N;as=N;cpu=N;nofile=N;nproc=N;parent=PID</c>,
    /// where <c>parent</c> (with <see cref="TcpForkServerOptions.DieWithParent"/>, else empty) is the pid to die with.
    /// </summary>
    public static string EncodeSettings(TcpForkServerOptions o) => string.Create(CultureInfo.InvariantCulture,
        $"log={(int)o.LogLevel};as={o.Limits.AddressSpace};cpu={o.Limits.CpuSeconds};nofile={o.Limits.OpenFiles};nproc={o.Limits.Processes};parent={(o.DieWithParent ? Interop.GetPid() : null)}");

    /// <summary>Reads <see cref="SettingsVariable"/>; false when the parent did not set it. <paramref name="dieWithParent"/>: the parent's pid, or 0.</summary>
    public static bool TryDecodeSettings(out LogLevel level, out ChildLimits limits, out int dieWithParent)
    {
        level = LogLevel.Normal;
        limits = new ChildLimits();
        dieWithParent = 0;
        string? text = Environment.GetEnvironmentVariable(SettingsVariable);
        if (text is null)
        {
            return false;
        }
        foreach (string pair in text.Split(';'))
        {
            string[] kv = pair.Split('=', 2);
            long? n = kv.Length == 2 && long.TryParse(kv[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) ? v : null;
            switch (kv[0])
            {
                case "log": level = (LogLevel)(n ?? 1); break;
                case "as": limits.AddressSpace = n; break;
                case "cpu": limits.CpuSeconds = n; break;
                case "nofile": limits.OpenFiles = n; break;
                case "nproc": limits.Processes = n; break;
                case "parent": dieWithParent = (int)(n ?? 0); break;
            }
        }
        return true;
    }
    public const int InheritedFd = 3;

    /// <summary>True in a spawned child; removes the variables so the handler's own children do not see them.</summary>
    public static bool TryTake(out int fd, out long number, out int fromSameIp)
    {
        string? fdText = Environment.GetEnvironmentVariable(FdVariable);
        fd = -1;
        number = 0;
        fromSameIp = 1;
        if (fdText is null)
        {
            return false;
        }
        Environment.SetEnvironmentVariable(FdVariable, null);
        if (!int.TryParse(fdText, NumberStyles.None, CultureInfo.InvariantCulture, out fd))
        {
            throw new InvalidOperationException($"{FdVariable}='{fdText}' is not a descriptor number");
        }
        long.TryParse(Environment.GetEnvironmentVariable(ConnectionVariable), NumberStyles.None, CultureInfo.InvariantCulture, out number);
        Environment.SetEnvironmentVariable(ConnectionVariable, null);
        int.TryParse(Environment.GetEnvironmentVariable(FromSameIpVariable), NumberStyles.None, CultureInfo.InvariantCulture, out fromSameIp);
        Environment.SetEnvironmentVariable(FromSameIpVariable, null);
        Environment.SetEnvironmentVariable(SettingsVariable, null);
        return true;
    }
}
