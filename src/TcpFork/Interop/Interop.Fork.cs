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
}
