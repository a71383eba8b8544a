using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    internal const uint SPLICE_F_MOVE = 1;

    [LibraryImport(Libc, EntryPoint = "splice", SetLastError = true)]
    private static partial nint SpliceOnce(int fdIn, long* offIn, int fdOut, long* offOut, nuint len, uint flags);

    /// <summary>splice(2) between a socket and a pipe, retried on EINTR.</summary>
    internal static nint Splice(int fdIn, int fdOut, nuint len)
    {
        nint r;
        while (Retry(r = SpliceOnce(fdIn, null, fdOut, null, len, SPLICE_F_MOVE))) { }
        return r;
    }
}
