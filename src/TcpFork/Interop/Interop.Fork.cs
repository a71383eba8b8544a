using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    internal const int WNOHANG = 1;

    /// <summary>
    /// glibc's _Fork (2.34+): fork(2) without the atfork handlers, which take and reset malloc's, stdio's
    /// and NSS's locks around the fork on behalf of other threads. The parent has no other thread that
    /// could hold them (docs/fork-safety.md, invariant 1), so they would only cost time, and pages the
    /// child must copy. Only ever called from the NativeAOT parent.
    /// </summary>
    [LibraryImport(Libc, EntryPoint = "_Fork", SetLastError = true)]
    internal static partial int Fork();

    /// <summary>_exit(2): ends a forked child without running the parent's shutdown work.</summary>
    [LibraryImport(Libc, EntryPoint = "_exit")]
    internal static partial void Exit(int status);

    [LibraryImport(Libc, EntryPoint = "waitpid", SetLastError = true)]
    internal static partial int WaitPid(int pid, int* status, int options);

    [LibraryImport(Libc, EntryPoint = "getpid")]
    internal static partial int GetPid();

    [LibraryImport(Libc, EntryPoint = "gettid")]
    internal static partial int GetTid();

    [LibraryImport(Libc, EntryPoint = "kill", SetLastError = true)]
    internal static partial int Kill(int pid, int signal);

    /// <summary>setpgid(2): <c>SetPgid(0, 0)</c> makes the caller the leader of a process group of its own.</summary>
    [LibraryImport(Libc, EntryPoint = "setpgid", SetLastError = true)]
    internal static partial int SetPgid(int pid, int pgid);

    /// <summary>
    /// Signals child <paramref name="pid"/>'s process group (every child leads one, whose id is its pid),
    /// so whatever the child started goes too; the child alone when the group is gone (it moved itself
    /// to another group). Returns 0 when a signal was sent.
    /// </summary>
    internal static int KillGroup(int pid, int signal)
    {
        if (Kill(-pid, signal) == 0)
        {
            return 0;
        }
        return Kill(pid, signal);
    }
}
