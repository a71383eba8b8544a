using System.Net;
using System.Net.Sockets;

namespace TcpFork.Tests;

/// <summary>Clients for echo servers: they send and receive at the same time, so large payloads cannot deadlock.</summary>
public static class EchoClient
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public static Socket Connect(int port, AddressFamily family = AddressFamily.InterNetwork)
    {
        var s = new Socket(family, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(new IPEndPoint(family == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Loopback : IPAddress.Loopback, port));
        return s;
    }

    public static Socket ConnectUnix(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        return s;
    }

    /// <summary>Sends <paramref name="data"/>, shuts down the write side, returns everything read until EOF.</summary>
    public static async Task<byte[]> ExchangeAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        using var cts = new CancellationTokenSource(Timeout);
        Task<byte[]> reader = ReadToEndAsync(socket, cts.Token);
        for (int sent = 0; sent < data.Length;)
        {
            sent += await socket.SendAsync(data[sent..Math.Min(data.Length, sent + 256 * 1024)], SocketFlags.None, cts.Token);
        }
        socket.Shutdown(SocketShutdown.Send);
        return await reader;
    }

    /// <summary>Everything the server sends until it closes, within 20 s; a reset reads as nothing (a refused client may be reset).</summary>
    public static async Task<byte[]> DrainAsync(Socket socket)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            return await ReadToEndAsync(socket, cts.Token);
        }
        catch (SocketException)
        {
            return [];
        }
    }

    public static async Task<byte[]> ReadToEndAsync(Socket socket, CancellationToken token)
    {
        var received = new MemoryStream();
        byte[] buffer = new byte[256 * 1024];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, token)) > 0)
        {
            received.Write(buffer, 0, n);
        }
        return received.ToArray();
    }

    /// <summary>Sends <paramref name="data"/> and reads exactly as many bytes back, without closing.</summary>
    public static async Task<byte[]> RoundTripAsync(Socket socket, byte[] data, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeout);
        await socket.SendAsync(data, SocketFlags.None, cts.Token);
        byte[] back = new byte[data.Length];
        for (int got = 0; got < back.Length;)
        {
            int n = await socket.ReceiveAsync(back.AsMemory(got), SocketFlags.None, cts.Token);
            if (n == 0)
            {
                throw new EndOfStreamException($"EOF after {got} of {back.Length} bytes");
            }
            got += n;
        }
        return back;
    }

    /// <summary>One whole echo connection to 127.0.0.1:<paramref name="port"/>; returns what came back.</summary>
    public static async Task<byte[]> EchoOnceAsync(int port, byte[] data)
    {
        using Socket s = Connect(port);
        return await ExchangeAsync(s, data);
    }
}
