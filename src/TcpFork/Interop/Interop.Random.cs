using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "getrandom", SetLastError = true)]
    private static partial nint GetRandomOnce(byte* buffer, nuint length, uint flags);

    /// <summary>
    /// Fills <paramref name="buffer"/> from the kernel's generator (getrandom(2), Linux 3.17+), retried on
    /// EINTR and partial reads; throws on failure. No descriptor and no library load: a forked child's
    /// re-seed must not cost it OpenSSL's start-up.
    /// </summary>
    internal static void FillRandom(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            nuint done = 0;
            while (done < (nuint)buffer.Length)
            {
                nint r;
                while (Retry(r = GetRandomOnce(p + done, (nuint)buffer.Length - done, 0))) { }
                if (r < 0)
                {
                    Throw("getrandom");
                }
                done += (nuint)r;
            }
        }
    }
}
