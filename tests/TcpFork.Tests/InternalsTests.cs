using System.Net;
using CsCheck;

namespace TcpFork.Tests;

/// <summary>The subtle internals, against a model: the child table's deletion and the address formatting the log relies on.</summary>
public class InternalsTests
{
    /// <summary>
    /// Random adds and removes, with pids chosen to collide in the pid → slot map, against a dictionary:
    /// a backward-shift deletion that lost an entry would fail a later Remove.
    /// </summary>
    [Fact]
    public void The_child_table_agrees_with_a_dictionary_under_any_sequence_of_adds_and_removes()
    {
        Gen.Select(Gen.Int[1, 64], Gen.Select(Gen.Bool, Gen.Int[1, 4]).Array[1, 400]).Sample((capacity, steps) =>
        {
            using var memory = new ParentMemory();
            var table = new ChildTable(capacity, memory, keepConnections: true);
            var model = new Dictionary<int, (long Started, int Fd)>();
            int nextPid = 100;
            foreach ((bool add, int pick) in steps)
            {
                if (add && !table.IsFull)
                {
                    // Pids a multiple of the table's size apart probe the same slots.
                    int pid = nextPid += pick * capacity;
                    SockAddr peer = SockAddr.FromIP(IPAddress.Loopback, pid & 0xffff);
                    table.Add(pid, peer, pid * 10L, pid + 1);
                    model[pid] = (pid * 10L, pid + 1);
                }
                else if (model.Count > 0)
                {
                    int pid = model.Keys.ElementAt(pick % model.Count);
                    Assert.True(table.Remove(pid, out SockAddr peer, out int fd, out long started, out _));
                    Assert.Equal((model[pid].Started, model[pid].Fd, pid & 0xffff), (started, fd, peer.Port));
                    model.Remove(pid);
                }
                Assert.False(table.Remove(-pick, out _, out _, out _, out _)); // never one of ours
                Assert.Equal(model.Count, table.Count);
            }
            var pids = Enumerable.Range(0, table.Capacity).Select(table.PidAt).Where(p => p != 0).Order();
            Assert.Equal(model.Keys.Order(), pids);
        }, iter: 300);
    }

    /// <summary>IPv6 in the log as RFC 5952 writes it, as .NET's own formatter does (lower case, the longest run of zero groups as ::, mapped IPv4 dotted).</summary>
    [Fact]
    public void IPv6_addresses_are_formatted_as_RFC_5952_says()
    {
        // Each group zero half the time, so runs of zeros of every length and position come up.
        Gen.Select(Gen.Bool, Gen.UShort).Array[8].Sample(groups =>
        {
            byte[] bytes = new byte[16];
            for (int i = 0; i < 8; i++)
            {
                ushort g = groups[i].Item1 ? (ushort)0 : groups[i].Item2;
                bytes[2 * i] = (byte)(g >> 8);
                bytes[(2 * i) + 1] = (byte)g;
            }
            var ip = new IPAddress(bytes);
            SockAddr address = SockAddr.FromIP(ip, 443);
            Assert.Equal($"[{Expected(ip)}]:443", address.ToString());
        }, iter: 5000);
        Assert.Equal("[::ffff:10.1.2.3]:1", SockAddr.FromIP(IPAddress.Parse("::ffff:10.1.2.3"), 1).ToString());
        Assert.Equal("[2001:db8::1:0:0:1]:1", SockAddr.FromIP(IPAddress.Parse("2001:db8:0:0:1:0:0:1"), 1).ToString()); // the first of two equal runs
        Assert.Equal("[2001:db8:0:1:1:1:1:1]:1", SockAddr.FromIP(IPAddress.Parse("2001:db8:0:1:1:1:1:1"), 1).ToString()); // one zero group stays
        Assert.Equal("10.0.0.1:0", SockAddr.FromIP(IPAddress.Parse("10.0.0.1"), 0).ToString());
    }

    /// <summary>.NET's text, except that it writes an IPv4-compatible address (::a.b.c.d, deprecated by RFC 4291) dotted where RFC 5952 writes hex.</summary>
    private static string Expected(IPAddress ip)
    {
        string text = ip.ToString();
        return text.StartsWith("::", StringComparison.Ordinal) && text.Contains('.', StringComparison.Ordinal) && !text.StartsWith("::ffff:", StringComparison.Ordinal)
            ? Rfc5952Hex(ip.GetAddressBytes())
            : text;
    }

    private static string Rfc5952Hex(byte[] b) =>
        b[12] == 0 && b[13] == 0 ? $"::{(b[14] << 8) | b[15]:x}" : $"::{(b[12] << 8) | b[13]:x}:{(b[14] << 8) | b[15]:x}";
}
