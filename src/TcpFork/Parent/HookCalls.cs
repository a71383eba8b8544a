namespace TcpFork;

/// <summary>
/// Runs the library's hooks (<see cref="TcpForkServerOptions.Verify"/>,
/// <see cref="TcpForkServerOptions.ChildExited"/>) on the parent's thread, and keeps them from breaking
/// it: an exception is logged once per hook and type (a fixed table of 8, so a hook that keeps
/// throwing costs nothing) and survived; allocating is reported once (docs/fork-safety.md, invariant
/// 3). A Verify that throws refuses the connection. The exception itself was allocated, so a throwing
/// call is not also reported as allocating.
/// </summary>
internal sealed class HookCalls(TcpForkServerOptions options, ServerLog log)
{
    private readonly Type?[] _verifyThrew = new Type?[8], _exitedThrew = new Type?[8];
    private bool _allocationReported;

    private static long Allocated => GC.GetAllocatedBytesForCurrentThread();

    /// <summary>True when there is no Verify hook or it admits <paramref name="peer"/>.</summary>
    public bool Verify(in SockAddr peer)
    {
        if (options.Verify is not { } verify)
        {
            return true;
        }
        long before = Allocated;
        try
        {
            bool allowed = verify(new ClientAddress(in peer));
            ReportAllocation("Verify", before);
            return allowed;
        }
#pragma warning disable CA1031 // Any exception from user code in the parent is logged and survived: the parent must not die.
        catch (Exception e)
#pragma warning restore CA1031
        {
            ReportOnce(_verifyThrew, "Verify", e, "connections it throws for are refused");
            return false;
        }
    }

    public void Exited(int pid, int status, long startedMs, long now)
    {
        if (options.ChildExited is not { } exited)
        {
            return;
        }
        long before = Allocated;
        try
        {
            exited(new ChildExit(pid, status, TimeSpan.FromMilliseconds(now - startedMs)));
            ReportAllocation("ChildExited", before);
        }
#pragma warning disable CA1031 // As above: logged once per type, and the parent serves on.
        catch (Exception e)
#pragma warning restore CA1031
        {
            ReportOnce(_exitedThrew, "ChildExited", e, "the parent serves on");
        }
    }

    private void ReportOnce(Type?[] seen, string hook, Exception e, string consequence)
    {
        Type type = e.GetType();
        for (int i = 0; i < seen.Length; i++)
        {
            if (seen[i] == type)
            {
                return;
            }
            if (seen[i] is null)
            {
                seen[i] = type;
                log.HookThrew(hook, e, consequence);
                return;
            }
        }
        // More distinct types than slots: those go unlogged rather than costing the parent memory.
    }

    private void ReportAllocation(string hook, long before)
    {
        long allocated = Allocated - before;
        if (allocated > 0 && !_allocationReported)
        {
            _allocationReported = true;
            log.HookAllocated(hook, allocated);
        }
    }
}
