namespace TcpFork;

/// <summary>
/// A spawned child that exits with the status of a .NET runtime that could not start (before Main,
/// so before its handler) gets a line saying why that usually happens: the NativeAOT runtime exits
/// without a word when it cannot create its finalizer thread. A handler may return that status too,
/// hence "usually"; the line is rate-limited like every per-connection warning.
/// </summary>
/// <param name="failureStatus">The launcher's <see cref="ILauncher.StartFailureStatus"/>; -1 when its children start no runtime of their own.</param>
/// <param name="repeats">Where the line's repeats are counted.</param>
/// <param name="log">The log.</param>
internal sealed class StartCheck(int failureStatus, RepeatedWarnings repeats, ServerLog log)
{
    public void Ended(int pid, int waitStatus, long ranMs, long now)
    {
        if (failureStatus < 0)
        {
            return;
        }
        if ((waitStatus & 0x7f) != 0 || ((waitStatus >> 8) & 0xff) != failureStatus)
        {
            repeats.Cleared(Repeat.ChildStartFailed, now);
        }
        else if (repeats.First(Repeat.ChildStartFailed, 0, now))
        {
            log.ChildStartFailed(pid, failureStatus, ranMs);
        }
    }
}
