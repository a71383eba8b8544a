using System.Diagnostics;

namespace TcpFork.Tests;

/// <summary>
/// Waits for a state the kernel sends no event for — a /proc field, a child reaped, a socket's owner —
/// by looking again every 10 ms, bounded in time. Whatever has an event (a log line, a socket's EOF, a
/// process's exit) is waited on through that event instead.
/// </summary>
internal static class Poll
{
    private static readonly TimeSpan s_interval = TimeSpan.FromMilliseconds(10);

    /// <summary>Returns once <paramref name="done"/> holds; fails the test with <paramref name="why"/> after <paramref name="limit"/>.</summary>
    public static Task UntilAsync(Func<bool> done, TimeSpan limit, Func<string> why) => UntilAsync(() => Task.FromResult(done()), limit, why);

    /// <summary>As <see cref="UntilAsync(Func{bool}, TimeSpan, Func{string})"/>, for a state read asynchronously (another program's HTTP API).</summary>
    public static async Task UntilAsync(Func<Task<bool>> done, TimeSpan limit, Func<string> why)
    {
        var clock = Stopwatch.StartNew();
        while (!await done())
        {
            Assert.True(clock.Elapsed < limit, why());
            await Task.Delay(s_interval);
        }
    }

    /// <inheritdoc cref="UntilAsync(Func{bool}, TimeSpan, Func{string})"/>
    public static void Until(Func<bool> done, TimeSpan limit, Func<string> why) => UntilAsync(done, limit, why).GetAwaiter().GetResult();
}
