// A behavioural stand-in for the septet tile, written from the port contract and
// golden/FORMAT.md (not from the RTL): it lets the testbench's drivers, scoreboard,
// memory-mode wrapper and measurements be tested on their own.  One record per
// cycle at most; its bus efficiency is not the real tile's.
//
// BUG = 1 corrupts lane 1's result of every block whose result is odd (the
// scoreboard must catch it).
module septet_tile #(
    parameter int L = 4,          // lanes
    parameter int W = 64,         // bus width
    parameter int E = 4,          // even slot bits
    parameter int O = 3,          // odd slot bits
    parameter int SHARED = 0,     // 1: shared grid (one slot)
    parameter int GP = 0,         // pairs per group, 0: per column
    parameter int ACC = 48,       // result width (wide accumulator)
    parameter int REQUANT = 0,
    parameter int BUG = 0
) (
    input  logic clk,
    input  logic rst,
    input  logic [((W + 7) / 8) * 8 - 1:0] s_axis_weights__tdata,
    input  logic s_axis_weights__tvalid,
    output logic s_axis_weights__tready,
    input  logic s_axis_weights__tlast,
    input  logic [15:0] s_axis_act__tdata,
    input  logic s_axis_act__tvalid,
    output logic s_axis_act__tready,
    input  logic s_axis_act__tlast,
    input  logic [((L * 22 + 7) / 8) * 8 - 1:0] s_axis_params__tdata,
    input  logic s_axis_params__tvalid,
    output logic s_axis_params__tready,
    output logic [((L * (REQUANT ? 8 : ACC) + 7) / 8) * 8 - 1:0] m_axis_result__tdata,
    output logic m_axis_result__tvalid,
    input  logic m_axis_result__tready,
    output logic m_axis_result__tlast
);
    localparam int P = E + O;
    localparam int H = SHARED ? (E + 16) : (E + 16 + O + 16);
    localparam int LH = L * H;
    localparam int LP = L * P;
    localparam int REC = LH > LP ? LH : LP;
    localparam int BUFW = REC + 2 * W;
    localparam int RW = REQUANT ? 8 : ACC;
    localparam int SH = SHARED ? E - O : 0;

    logic [BUFW-1:0] bits;
    int nbits;
    logic header_next, tlast_taken;
    int pair_in_group;
    longint acc0 [L], acc1 [L], y [L], z0 [L], z1 [L], m0 [L], m1 [L];
    longint sa0, sa1;

    logic out_free, block_end, can_beat;
    assign out_free = !m_axis_result__tvalid || m_axis_result__tready;
    assign s_axis_weights__tready = !rst && !tlast_taken && nbits <= BUFW - W;
    assign block_end = s_axis_act__tlast;
    assign can_beat = !rst && !header_next && nbits >= LP
                      && (!block_end || (out_free && (!REQUANT || s_axis_params__tvalid)));
    assign s_axis_act__tready = can_beat;
    assign s_axis_params__tready = can_beat && s_axis_act__tvalid && block_end && REQUANT != 0;

    function automatic longint field(input logic [BUFW-1:0] v, input int lsb, input int width);
        longint r = 0;
        for (int i = 0; i < width; i++) r[i] = v[lsb + i];
        return r;
    endfunction

    function automatic longint requantize(input longint yv, input longint mult, input longint shift);
        logic signed [127:0] p;
        p = (128'(signed'(yv)) * 128'(mult) + (128'sd1 <<< (shift - 1))) >>> shift;
        if (p > 127) return 127;
        if (p < -128) return -128;
        return longint'(p);
    endfunction

    always_ff @(posedge clk) begin
        logic [BUFW-1:0] b;
        int n;
        logic fold, take_beat;
        longint ae, ao, qe, qo, v;
        b = bits;
        n = nbits;
        if (m_axis_result__tvalid && m_axis_result__tready) m_axis_result__tvalid <= 0;
        if (header_next && n >= LH) begin
            for (int l = 0; l < L; l++) begin
                z0[l] = field(b, l * H, E);
                m0[l] = field(b, l * H + E, 16);
                if (!SHARED) begin
                    z1[l] = field(b, l * H + E + 16, O);
                    m1[l] = field(b, l * H + E + 16 + O, 16);
                end
            end
            b = b >> LH;
            n = n - LH;
            header_next <= 0;
        end
        take_beat = s_axis_act__tvalid && can_beat;
        if (take_beat) begin
            ae = longint'(signed'(s_axis_act__tdata[7:0]));
            ao = longint'(signed'(s_axis_act__tdata[15:8]));
            for (int l = 0; l < L; l++) begin
                qe = field(b, l * P, E);
                qo = field(b, l * P + E, O);
                if (SHARED) acc0[l] = acc0[l] + ae * qe + ao * (qo << SH);
                else begin
                    acc0[l] = acc0[l] + ae * qe;
                    acc1[l] = acc1[l] + ao * qo;
                end
            end
            if (SHARED) sa0 = sa0 + ae + ao;
            else begin
                sa0 = sa0 + ae;
                sa1 = sa1 + ao;
            end
            b = b >> LP;
            n = n - LP;
            pair_in_group = pair_in_group + 1;
            fold = block_end || (GP != 0 && pair_in_group == GP);
            if (fold) begin
                for (int l = 0; l < L; l++) begin
                    y[l] = y[l] + m0[l] * (acc0[l] - z0[l] * sa0);
                    if (!SHARED) y[l] = y[l] + m1[l] * (acc1[l] - z1[l] * sa1);
                    acc0[l] = 0;
                    acc1[l] = 0;
                end
                sa0 = 0;
                sa1 = 0;
                pair_in_group = 0;
                header_next <= 1;
            end
            if (block_end) begin
                for (int l = 0; l < L; l++) begin
                    v = y[l];
                    if (REQUANT) v = requantize(v, longint'(s_axis_params__tdata[l * 22 +: 16]),
                                                longint'(s_axis_params__tdata[l * 22 + 16 +: 6]));
                    if (BUG && l == 1 && v[0]) v = v ^ 2;
                    m_axis_result__tdata[l * RW +: RW] <= RW'(v);
                    y[l] = 0;
                end
                m_axis_result__tvalid <= 1;
                m_axis_result__tlast <= tlast_taken;
                if (tlast_taken) begin
                    b = '0;
                    n = 0;
                    tlast_taken <= 0;
                end
            end
        end
        if (s_axis_weights__tvalid && s_axis_weights__tready) begin
            b = b | (BUFW'(s_axis_weights__tdata[W-1:0]) << n);
            n = n + W;
            if (s_axis_weights__tlast) tlast_taken <= 1;
        end
        bits <= b;
        nbits <= n;
        if (rst) begin
            bits <= '0;
            nbits <= 0;
            header_next <= 1;
            tlast_taken <= 0;
            pair_in_group = 0;
            m_axis_result__tvalid <= 0;
            m_axis_result__tlast <= 0;
            m_axis_result__tdata <= '0;
            sa0 = 0;
            sa1 = 0;
            for (int l = 0; l < L; l++) begin
                acc0[l] = 0;
                acc1[l] = 0;
                y[l] = 0;
            end
        end
    end
endmodule
