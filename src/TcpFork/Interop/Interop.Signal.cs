using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>A glibc sigset_t (1024 bits).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SigSet
{
    private fixed ulong _bits[16];
}

internal static unsafe partial class Interop
{
    internal const int SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGKILL = 9, SIGUSR2 = 12, SIGPIPE = 13, SIGTERM = 15, SIGCHLD = 17;
    internal const int SIG_BLOCK = 0, SIG_UNBLOCK = 1, SIG_SETMASK = 2;
    internal const int SFD_NONBLOCK = 0x800, SFD_CLOEXEC = 0x80000;
    internal const int SignalFdInfoSize = 128;
    internal static readonly nint SIG_DFL = 0;
    internal static readonly nint SIG_IGN = 1;

    [LibraryImport(Libc, EntryPoint = "sigemptyset")]
    internal static partial int SigEmptySet(SigSet* set);

    [LibraryImport(Libc, EntryPoint = "sigfillset")]
    internal static partial int SigFillSet(SigSet* set);

    [LibraryImport(Libc, EntryPoint = "sigaddset")]
    internal static partial int SigAddSet(SigSet* set, int signal);

    [LibraryImport(Libc, EntryPoint = "pthread_sigmask")]
    internal static partial int PthreadSigMask(int how, SigSet* set, SigSet* old);

    /// <summary>pause(2): sleeps until a signal handler runs.</summary>
    [LibraryImport(Libc, EntryPoint = "pause")]
    internal static partial int Pause();

    [LibraryImport(Libc, EntryPoint = "signalfd", SetLastError = true)]
    internal static partial int SignalFd(int fd, SigSet* mask, int flags);

    /// <summary>signal(2); only used with SIG_DFL and SIG_IGN, never with a handler.</summary>
    [LibraryImport(Libc, EntryPoint = "signal", SetLastError = true)]
    internal static partial nint Signal(int signal, nint handler);

    [LibraryImport(Libc, EntryPoint = "sigabbrev_np")]
    private static partial byte* SigAbbrev(int signal);

    /// <summary>The signal's name, e.g. SIGKILL (glibc's sigabbrev_np), written into <paramref name="dest"/>.</summary>
    internal static int SignalName(int signal, Span<byte> dest)
    {
        byte* abbrev = SigAbbrev(signal);
        if (abbrev == null)
        {
            return System.Text.Unicode.Utf8.TryWrite(dest, $"SIG{signal}", out int w) ? w : 0;
        }
        ReadOnlySpan<byte> name = MemoryMarshal.CreateReadOnlySpanFromNullTerminated(abbrev);
        if (dest.Length < name.Length + 3)
        {
            return 0;
        }
        "SIG"u8.CopyTo(dest);
        name.CopyTo(dest[3..]);
        return name.Length + 3;
    }
}
