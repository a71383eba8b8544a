using System.Runtime.InteropServices;

namespace TcpFork;

internal static partial class Interop
{
    /// <summary>prctl(2) option: the signal this process gets when the thread that created it ends.</summary>
    internal const int PR_SET_PDEATHSIG = 1;

    [LibraryImport(Libc, EntryPoint = "prctl", SetLastError = true)]
    internal static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport(Libc, EntryPoint = "unsetenv", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int UnsetEnv(string name);

    [LibraryImport(Libc, EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int SetEnv(string name, string value, int overwrite);

    [LibraryImport(Libc, EntryPoint = "getppid")]
    internal static partial int GetPPid();
}
