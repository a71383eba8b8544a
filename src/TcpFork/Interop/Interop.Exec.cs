using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    /// <summary>execve(2); returns only on failure.</summary>
    [LibraryImport(Libc, EntryPoint = "execve", SetLastError = true)]
    internal static partial int Execve(byte* path, byte** argv, byte** envp);
}
