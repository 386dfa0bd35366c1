// The memory-model top of the septet tile ("mem" mode): feeds septet_tile from binary files, with
// LFSR idle cycles and backpressure, and writes the results and cycle marks to files.
// Built and documented by tb/mem_wrapper.py, which sets every parameter with -G:
//   WB, PB, RB   tdata widths (padded to bytes) of s_axis_weights, s_axis_params, m_axis_result
//   ACT_DEPTH    activation pairs one GEMV can have (max_k / 2)
//   LFSR_BITS    a stall happens when the low LFSR_BITS bits of a source's LFSR fall below its threshold
//   HALF_PERIOD_NS  half a clock period when this top makes its own clock
//   *_FILE       names of the files in the simulator's directory
// and two defines, because they change port lists (which Verilator resolves before parameters):
//   SEPTET_REQUANT    the tile has s_axis_params (requantization), fed from PARAMS_FILE
//   SEPTET_HDL_CLOCK  this top makes its own clock (build with --timing) and drives clk out;
//                     otherwise clk is an input driven by cocotb
//
// Requests: the top serves GEMV sets one after another without a restart.  When `request`
// differs from `served` and no set is running, it reads META_FILE (the set), re-opens the
// input files, truncates the output files, sets served = request and runs the set; `done`
// rises when the set's last result is out.  The tile is reset once, at the start.
module septet_mem_tb #(
    parameter int WB = 64,
    parameter int PB = 8,
    parameter int RB = 8,
    parameter int ACT_DEPTH = 1,
    parameter int LFSR_BITS = 16,
    parameter int HALF_PERIOD_NS = 5,
    parameter string META_FILE = "mem_meta.txt",
    parameter string WEIGHTS_FILE = "mem_weights.bin",
    parameter string ACT_FILE = "mem_act.bin",
    parameter string PARAMS_FILE = "mem_params.bin",
    parameter string RESULTS_FILE = "mem_results.hex",
    parameter string CYCLES_FILE = "mem_cycles.txt"
) (
`ifdef SEPTET_HDL_CLOCK
    output logic clk = 1'b0,
`else
    input  logic clk,
`endif
    input  logic [31:0] request,
    output logic [31:0] served = 32'd0,
    output logic done = 1'b0,
    output logic timed_out = 1'b0
);
    localparam int RESET_CYCLES = 4;
`ifdef SEPTET_REQUANT
    localparam bit REQUANT = 1'b1;
`else
    localparam bit REQUANT = 1'b0;
`endif
`ifdef SEPTET_HDL_CLOCK
    always #(HALF_PERIOD_NS) clk = ~clk;
`endif
    logic rst = 1'b1;
    logic [WB-1:0] w_data;
    logic w_valid, w_ready, w_last;
    logic [15:0] a_data;
    logic a_valid, a_ready, a_last;
    logic [PB-1:0] p_data;
    logic p_valid, p_ready;
    logic [RB-1:0] r_data;
    logic r_valid, r_ready, r_last;

    // The tile has s_axis_params only when built with requantization: its ports follow the define.
    septet_tile tile (
        .clk(clk), .rst(rst),
        .s_axis_weights__tdata(w_data), .s_axis_weights__tvalid(w_valid),
        .s_axis_weights__tready(w_ready), .s_axis_weights__tlast(w_last),
        .s_axis_act__tdata(a_data), .s_axis_act__tvalid(a_valid),
        .s_axis_act__tready(a_ready), .s_axis_act__tlast(a_last),
`ifdef SEPTET_REQUANT
        .s_axis_params__tdata(p_data), .s_axis_params__tvalid(p_valid),
        .s_axis_params__tready(p_ready), .s_axis_params__tlast(1'b0),
`endif
        .m_axis_result__tdata(r_data), .m_axis_result__tvalid(r_valid),
        .m_axis_result__tready(r_ready), .m_axis_result__tlast(r_last)
    );
`ifndef SEPTET_REQUANT
    assign p_ready = 1'b0;
`endif

    // The running set (META_FILE): per GEMV its weight words, where they start in WEIGHTS_FILE
    // (in words), its activation pairs and column blocks.
    int n_gemv = 0, idle_threshold, backpressure_threshold, max_cycles;
    int unsigned seed;
    int n_words [], w_offset [], n_pairs [], n_blocks [];
    int fd_w = 0, fd_a = 0, fd_p = 0, fd_r = 0, fd_c = 0;
    logic [15:0] act_mem [ACT_DEPTH];
    longint cycle = 0, armed_at = 0;
    bit busy = 1'b0;

    function automatic int open_or_die(input string name, input string mode);
        int fd = $fopen(name, mode);
        if (fd == 0) begin
            $display("septet_mem_tb: cannot open %s", name);
            $finish;
        end
        return fd;
    endfunction

    function automatic void close_if_open(inout int fd);
        if (fd != 0) $fclose(fd);
        fd = 0;
    endfunction

    function automatic logic [31:0] xorshift(input logic [31:0] x);
        logic [31:0] y = x;
        y = y ^ (y << 13);
        y = y ^ (y >> 17);
        y = y ^ (y << 5);
        return y;
    endfunction

    // Below the threshold: this source stalls (or the sink is not ready) this cycle.
    function automatic bit passes(input logic [31:0] lfsr, input int threshold);
        return int'(lfsr & ((32'd1 << LFSR_BITS) - 1)) >= threshold;
    endfunction

    // One source's position: beat `beat` of GEMV `gemv`, which has `n` beats.  Steps to the next
    // beat; returns whether the beat just taken was the GEMV's last.
    function automatic bit advance(inout int beat, inout int gemv, input int n);
        beat = beat + 1;
        if (beat < n) return 1'b0;
        beat = 0;
        gemv = gemv + 1;
        return 1'b1;
    endfunction

    // Every file holds beats as whole bytes, most significant byte first ($fread's order).
    task automatic load_act(input int g);
        int unused;
        unused = $fread(act_mem, fd_a, 0, n_pairs[g]);
    endtask

    task automatic arm();
        int fd_m, unused;
        fd_m = open_or_die(META_FILE, "r");
        unused = $fscanf(fd_m, "%d %d %d %d %d\n", n_gemv, idle_threshold, backpressure_threshold, seed,
                         max_cycles);
        n_words = new[n_gemv];
        w_offset = new[n_gemv];
        n_pairs = new[n_gemv];
        n_blocks = new[n_gemv];
        for (int g = 0; g < n_gemv; g++)
            unused = $fscanf(fd_m, "%d %d %d %d\n", n_words[g], w_offset[g], n_pairs[g], n_blocks[g]);
        $fclose(fd_m);
        close_if_open(fd_w);
        close_if_open(fd_a);
        close_if_open(fd_p);
        close_if_open(fd_r);
        close_if_open(fd_c);
        fd_w = open_or_die(WEIGHTS_FILE, "rb");
        fd_a = open_or_die(ACT_FILE, "rb");
        fd_p = REQUANT ? open_or_die(PARAMS_FILE, "rb") : 0;
        fd_r = open_or_die(RESULTS_FILE, "w");
        fd_c = open_or_die(CYCLES_FILE, "w");
        if (n_gemv > 0) load_act(0);
    endtask

    logic [31:0] lfsr_w, lfsr_a, lfsr_p, lfsr_r;
    int w_gemv = 0, w_word = 0, a_gemv = 0, a_block = 0, a_pair = 0, p_gemv = 0, p_block = 0, r_gemv = 0;
    int start_gemv = 0;
    logic w_first = 1'b1;

    always @(posedge clk) begin
        logic [WB-1:0] word;
        logic [PB-1:0] pword;
        int unused;
        cycle <= cycle + 1;
        if (rst) begin
            if (cycle == RESET_CYCLES - 1) rst <= 1'b0;
            w_valid <= 0; a_valid <= 0; p_valid <= 0; r_ready <= 0;
        end else if (!busy) begin
            w_valid <= 0; a_valid <= 0; p_valid <= 0; r_ready <= 0;
            if (request != served) begin
                arm();
                served <= request;
                done <= 0;
                timed_out <= 0;
                busy = n_gemv > 0;
                if (n_gemv == 0) done <= 1;
                armed_at = cycle;
                w_gemv = 0; w_word = 0; a_gemv = 0; a_block = 0; a_pair = 0;
                p_gemv = 0; p_block = 0; r_gemv = 0; start_gemv = 0; w_first = 1'b1;
                lfsr_w <= seed ^ 32'h9E3779B9; lfsr_a <= seed ^ 32'h7F4A7C15;
                lfsr_p <= seed ^ 32'h85EBCA6B; lfsr_r <= seed ^ 32'hC2B2AE35;
            end
        end else begin
            lfsr_w <= xorshift(lfsr_w); lfsr_a <= xorshift(lfsr_a);
            lfsr_p <= xorshift(lfsr_p); lfsr_r <= xorshift(lfsr_r);
            // Weights: one GEMV's words after the other, tlast on each GEMV's final word.
            if (w_valid && w_ready) begin
                if (w_first) $fwrite(fd_c, "start %0d %0d\n", start_gemv, cycle - armed_at);
                w_first = w_last;
                if (w_last) start_gemv = start_gemv + 1;
            end
            if (!w_valid || w_ready) begin
                if (w_gemv < n_gemv && passes(lfsr_w, idle_threshold)) begin
                    if (w_word == 0) unused = $fseek(fd_w, w_offset[w_gemv] * (WB / 8), 0);
                    unused = $fread(word, fd_w);
                    w_data <= word;
                    w_valid <= 1;
                    w_last <= advance(w_word, w_gemv, n_words[w_gemv]);
                end else w_valid <= 0;
            end
            // Activations: the GEMV's pairs, once per column block, tlast on each block's last pair.
            if (!a_valid || a_ready) begin
                if (a_gemv < n_gemv && passes(lfsr_a, idle_threshold)) begin
                    a_data <= act_mem[a_pair];
                    a_valid <= 1;
                    a_last <= a_pair == n_pairs[a_gemv] - 1;
                    if (advance(a_pair, a_block, n_pairs[a_gemv]) && a_block == n_blocks[a_gemv]) begin
                        a_block = 0;
                        a_gemv = a_gemv + 1;
                        if (a_gemv < n_gemv) load_act(a_gemv);
                    end
                end else a_valid <= 0;
            end
            // Requantization parameters: one beat per column block.
            if (REQUANT && (!p_valid || p_ready)) begin
                if (p_gemv < n_gemv && passes(lfsr_p, idle_threshold)) begin
                    unused = $fread(pword, fd_p);
                    p_data <= pword;
                    p_valid <= 1;
                    unused = advance(p_block, p_gemv, n_blocks[p_gemv]);
                end else p_valid <= 0;
            end
            // Results: written as taken; backpressure from the LFSR.
            r_ready <= passes(lfsr_r, backpressure_threshold);
            if (r_valid && r_ready) begin
                $fwrite(fd_r, "%h %0d\n", r_data, r_last);
                if (r_last) begin
                    $fwrite(fd_c, "end %0d %0d\n", r_gemv, cycle - armed_at);
                    r_gemv = r_gemv + 1;
                    if (r_gemv == n_gemv) begin
                        busy = 1'b0;
                        done <= 1;
                        $fflush(fd_r);
                        $fflush(fd_c);
                    end
                end
            end
            if (busy && max_cycles > 0 && cycle - armed_at >= longint'(max_cycles)) begin
                $fwrite(fd_c, "timeout %0d %0d\n", r_gemv, cycle - armed_at);
                $fflush(fd_r);
                $fflush(fd_c);
                busy = 1'b0;
                timed_out <= 1;
                done <= 1;
            end
        end
    end
endmodule
