using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    internal const int SOCK_DGRAM = 2;

    /// <summary>sizeof(struct sockaddr_un): the family and 108 bytes of path.</summary>
    internal const int SockAddrUnixSize = 110;

    [LibraryImport(Libc, EntryPoint = "sendto", SetLastError = true)]
    private static partial nint SendToOnce(int fd, byte* buffer, nuint len, int flags, byte* address, int addressLength);

    /// <summary>sendto(2) of one datagram to a unix socket address, retried on EINTR; -1 with errno set on failure.</summary>
    internal static nint SendTo(int fd, byte* buffer, nuint len, int flags, byte* address, int addressLength)
    {
        nint r;
        while (Retry(r = SendToOnce(fd, buffer, len, flags, address, addressLength))) { }
        return r;
    }
}
