namespace TcpFork;

/// <summary>
/// Every descriptor the parent holds for itself — listeners, epoll, signalfd, /proc/self/pagemap (each a
/// <see cref="SafeFd"/>, which registers here) and the connections it keeps for the idle timeout — in one
/// table, so that a forked child closes exactly those (<see cref="CloseInForkedChild"/>). Everything else
/// stays open in the child: descriptors the program opened before Run() (inherited state, as the model
/// promises), and the runtime's own, which it keeps by number — its /dev/urandom, Console's duplicates of
/// stdout and stderr. Closing "everything above 2" let the next open() reuse those numbers: Guid.NewGuid
/// then read a handler's file.
/// </summary>
internal static unsafe class ParentDescriptors
{
    private static readonly List<SafeFd> s_handles = [];
    private static int* s_kept;
    private static int s_keptCapacity;

    public static void Track(SafeFd handle)
    {
        lock (s_handles)
        {
            s_handles.Add(handle);
        }
    }

    public static void Untrack(SafeFd handle)
    {
        lock (s_handles)
        {
            s_handles.Remove(handle);
        }
    }

    /// <summary>
    /// The column of kept connection descriptors (-1 for none), in memory children share: a forked
    /// child must find the others' connections there, which parent-only memory would show it as zeros.
    /// </summary>
    public static void TrackKeptConnections(int* column, int capacity)
    {
        s_kept = column;
        s_keptCapacity = capacity;
    }

    /// <summary>
    /// In a forked child: closes every descriptor of the table but <paramref name="keep"/> (its own
    /// connection), checking each close. The handles are marked closed first, so neither Dispose nor a
    /// finalizer in the child can close the number again once the handler has reused it.
    /// </summary>
    public static void CloseInForkedChild(int keep)
    {
        foreach (SafeFd handle in s_handles)
        {
            int fd = handle.Fd;
            handle.SetHandleAsInvalid();
            Close(fd);
        }
        for (int i = 0; i < s_keptCapacity; i++)
        {
            int fd = s_kept[i];
            if (fd >= 0 && fd != keep)
            {
                Close(fd);
            }
        }

        static void Close(int fd)
        {
            if (Interop.Close(fd) < 0 && Interop.LastError != Errno.EINTR)
            {
                throw Interop.Error("close");
            }
        }
    }
}
