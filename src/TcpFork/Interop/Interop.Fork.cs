using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    internal const int WNOHANG = 1;

    /// <summary>fork(2). Only ever called from the NativeAOT parent; see docs/fork-safety.md.</summary>
    [LibraryImport(Libc, EntryPoint = "fork", SetLastError = true)]
    internal static partial int Fork();

    /// <summary>_exit(2): ends a forked child without running the parent's shutdown work.</summary>
    [LibraryImport(Libc, EntryPoint = "_exit")]
    internal static partial void Exit(int status);

    [LibraryImport(Libc, EntryPoint = "waitpid", SetLastError = true)]
    internal static partial int WaitPid(int pid, int* status, int options);

    [LibraryImport(Libc, EntryPoint = "getpid")]
    internal static partial int GetPid();

    [LibraryImport(Libc, EntryPoint = "kill", SetLastError = true)]
    internal static partial int Kill(int pid, int signal);
}
