namespace TcpFork;

/// <summary>
/// With an idle timeout the parent keeps a copy of every connection (it reads TCP_INFO from it), and with
/// the PROXY protocol it holds each connection until its header is read (up to the connection limit with
/// the children), so it needs one descriptor per connection on top of its own. Checked once at start, against RLIMIT_NOFILE:
/// the soft limit is raised toward the hard one if that suffices, and otherwise Run() refuses to start,
/// instead of meeting EMFILE at the limit's worth of connections and backing off forever.
/// </summary>
internal static unsafe class DescriptorBudget
{
    /// <summary>Descriptors beyond the kept connections: one being accepted, the runtime's, the loop's, slack.</summary>
    private const int Headroom = 64;

    public static void Ensure(TcpForkServerOptions options)
    {
        if (options.IdleTimeout is null && options.ProxyProtocol == ProxyProtocol.Off)
        {
            return; // the parent holds a connection only between accept and close: one at a time
        }
        ulong needed = (ulong)OpenNow() + (ulong)options.MaxConnections + (ulong)options.Listen.Count + Headroom;
        Interop.RLimit limit;
        if (Interop.GetRLimit(Interop.RLIMIT_NOFILE, &limit) < 0 || limit.Current >= needed)
        {
            return;
        }
        if (limit.Max >= needed)
        {
            var raised = new Interop.RLimit { Current = needed, Max = limit.Max };
            if (Interop.SetRLimit(Interop.RLIMIT_NOFILE, &raised) == 0)
            {
                return;
            }
        }
        throw new ArgumentException(
            $"TcpForkServerOptions.MaxConnections {options.MaxConnections} with TcpForkServerOptions.{(options.IdleTimeout is null ? "ProxyProtocol" : "IdleTimeout")} needs about {needed} descriptors " +
            $"(the parent {(options.IdleTimeout is null ? "holds each connection until its PROXY header is read" : "keeps each connection")}), but RLIMIT_NOFILE allows {limit.Current} (hard limit {limit.Max}); lower the connections or raise the limit");
    }

    private static int OpenNow()
    {
        try
        {
            return Directory.GetFiles("/proc/self/fd").Length;
        }
        catch (IOException)
        {
            return 16;
        }
    }
}
