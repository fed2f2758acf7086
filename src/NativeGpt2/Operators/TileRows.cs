namespace NativeGpt2.Operators;

/// <summary>
/// How many rows a register tile sums: six, or five or four at the end of a block of rows that six does not divide, or
/// seven or eight for a batch of that many rows where the registers allow (the head's lane tile: twelve, or eight or four). The count is a type, so that each size compiles to its own loop without
/// the rows it does not have.
/// </summary>
internal interface ITileRows
{
    static abstract int Count { get; }
}

internal struct TwelveRows : ITileRows
{
    public static int Count => 12;
}

internal struct EightRows : ITileRows
{
    public static int Count => 8;
}

internal struct SevenRows : ITileRows
{
    public static int Count => 7;
}

internal struct SixRows : ITileRows
{
    public static int Count => 6;
}

internal struct FiveRows : ITileRows
{
    public static int Count => 5;
}

internal struct FourRows : ITileRows
{
    public static int Count => 4;
}

internal static class RowTiles
{
    /// <summary>The most rows a tile sums.</summary>
    public const int Most = 6;

    /// <summary>
    /// The rows of the next tile when <paramref name="remaining"/> rows are left: six while that leaves none or four or
    /// more, then four or five (8 = 4 + 4, 9 = 5 + 4), so that every tile keeps eight sums or more in flight; fewer than
    /// four rows are what the caller runs otherwise (a lone row, or a few rows padded to six).
    /// </summary>
    public static int Next(int remaining) => remaining switch
    {
        8 => 4,
        9 => 5,
        >= Most => Most,
        _ => remaining,
    };

    /// <summary>
    /// <see cref="Next(int)"/>, except that seven or eight rows left are one tile where a tile of that many fits the
    /// registers (<paramref name="wide"/>: 32 vector registers, two a row, as with AVX-512): one pass over the weights
    /// where 8 = 4 + 4 takes two, and 7 = 6 + 1 two. A decoding batch of eight sequences is eight rows.
    /// </summary>
    public static int Next(int remaining, bool wide) => wide && remaining is 7 or 8 ? remaining : Next(remaining);
}
