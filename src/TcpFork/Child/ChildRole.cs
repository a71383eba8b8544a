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
        return true;
    }
}
