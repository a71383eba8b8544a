using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    /// <summary>execve(2); returns only on failure.</summary>
    [LibraryImport(Libc, EntryPoint = "execve", SetLastError = true)]
    internal static partial int Execve(byte* path, byte** argv, byte** envp);
}

internal static unsafe partial class Interop
{
    /// <summary>execvpe(3): execve with a PATH search; returns only on failure.</summary>
    [LibraryImport(Libc, EntryPoint = "execvpe", SetLastError = true)]
    internal static partial int Execvpe(byte* file, byte** argv, byte** envp);
}
