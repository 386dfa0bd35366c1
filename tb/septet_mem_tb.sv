// The memory-model top of the septet tile ("mem" mode): feeds septet_tile from files, with
// LFSR idle cycles and backpressure, and writes the results and cycle marks to files.
// Built and documented by tb/mem_wrapper.py, which sets every parameter with -G:
//   WB, PB, RB   tdata widths (padded to bytes) of s_axis_weights, s_axis_params, m_axis_result
//   ACT_DEPTH    activation pairs one GEMV can have (max_k / 2)
//   LFSR_BITS    a stall happens when the low LFSR_BITS bits of a source's LFSR fall below its threshold
//   HALF_PERIOD_NS  half a clock period when this top makes its own clock
//   *_FILE       names of the files in the test directory
// and two defines, because they change port lists (which Verilator resolves before parameters):
//   SEPTET_REQUANT    the tile has s_axis_params (requantization), fed from PARAMS_FILE
//   SEPTET_HDL_CLOCK  this top makes its own clock (build with --timing) and drives clk out;
//                     otherwise clk is an input driven by cocotb
module septet_mem_tb #(
    parameter int WB = 64,
    parameter int PB = 8,
    parameter int RB = 8,
    parameter int ACT_DEPTH = 1,
    parameter int LFSR_BITS = 16,
    parameter int HALF_PERIOD_NS = 5,
    parameter string META_FILE = "mem_meta.txt",
    parameter string WEIGHTS_FILE = "mem_weights.hex",
    parameter string ACT_FILE = "mem_act.hex",
    parameter string PARAMS_FILE = "mem_params.hex",
    parameter string RESULTS_FILE = "mem_results.hex",
    parameter string CYCLES_FILE = "mem_cycles.txt"
) (
`ifdef SEPTET_HDL_CLOCK
    output logic clk = 1'b0,
`else
    input  logic clk,
`endif
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

    int n_gemv, idle_threshold, backpressure_threshold, max_cycles;
    int unsigned seed;
    int n_words [], n_pairs [], n_blocks [];
    int fd_w, fd_a, fd_p, fd_r, fd_c;
    logic [15:0] act_mem [ACT_DEPTH];
    longint cycle = 0;

    function automatic int open_or_die(input string name, input string mode);
        int fd = $fopen(name, mode);
        if (fd == 0) begin
            $display("septet_mem_tb: cannot open %s", name);
            $finish;
        end
        return fd;
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

    task automatic load_act(input int g);
        int unused;
        for (int i = 0; i < n_pairs[g]; i++) unused = $fscanf(fd_a, "%h\n", act_mem[i]);
    endtask

    initial begin
        int fd_m, unused;
        fd_m = open_or_die(META_FILE, "r");
        unused = $fscanf(fd_m, "%d %d %d %d %d\n", n_gemv, idle_threshold, backpressure_threshold, seed,
                         max_cycles);
        n_words = new[n_gemv];
        n_pairs = new[n_gemv];
        n_blocks = new[n_gemv];
        for (int g = 0; g < n_gemv; g++)
            unused = $fscanf(fd_m, "%d %d %d\n", n_words[g], n_pairs[g], n_blocks[g]);
        $fclose(fd_m);
        fd_w = open_or_die(WEIGHTS_FILE, "r");
        fd_a = open_or_die(ACT_FILE, "r");
        fd_p = REQUANT ? open_or_die(PARAMS_FILE, "r") : 0;
        fd_r = open_or_die(RESULTS_FILE, "w");
        fd_c = open_or_die(CYCLES_FILE, "w");
        load_act(0);
    end

    logic [31:0] lfsr_w, lfsr_a, lfsr_p, lfsr_r;
    int w_gemv = 0, w_word = 0, a_gemv = 0, a_block = 0, a_pair = 0, p_gemv = 0, p_block = 0, r_gemv = 0;
    int start_gemv = 0;
    logic w_first = 1'b1;

    always @(posedge clk) begin
        logic [WB-1:0] word;
        logic [PB-1:0] pword;
        int unused;
        if (rst) begin
            cycle <= cycle + 1;
            if (cycle == RESET_CYCLES - 1) rst <= 1'b0;
            w_valid <= 0; a_valid <= 0; p_valid <= 0; r_ready <= 0;
            done <= 0; timed_out <= 0;
            lfsr_w <= seed ^ 32'h9E3779B9; lfsr_a <= seed ^ 32'h7F4A7C15;
            lfsr_p <= seed ^ 32'h85EBCA6B; lfsr_r <= seed ^ 32'hC2B2AE35;
        end else if (!done) begin
            cycle <= cycle + 1;
            lfsr_w <= xorshift(lfsr_w); lfsr_a <= xorshift(lfsr_a);
            lfsr_p <= xorshift(lfsr_p); lfsr_r <= xorshift(lfsr_r);
            // Weights: one GEMV's words after the other, tlast on each GEMV's final word.
            if (w_valid && w_ready) begin
                if (w_first) $fwrite(fd_c, "start %0d %0d\n", start_gemv, cycle);
                w_first = w_last;
                if (w_last) start_gemv = start_gemv + 1;
            end
            if (!w_valid || w_ready) begin
                if (w_gemv < n_gemv && passes(lfsr_w, idle_threshold)) begin
                    unused = $fscanf(fd_w, "%h\n", word);
                    w_data <= word;
                    w_last <= w_word == n_words[w_gemv] - 1;
                    w_valid <= 1;
                    w_word = w_word + 1;
                    if (w_word == n_words[w_gemv]) begin
                        w_word = 0;
                        w_gemv = w_gemv + 1;
                    end
                end else w_valid <= 0;
            end
            // Activations: the GEMV's pairs, once per column block, tlast on each block's last pair.
            if (!a_valid || a_ready) begin
                if (a_gemv < n_gemv && passes(lfsr_a, idle_threshold)) begin
                    a_data <= act_mem[a_pair];
                    a_last <= a_pair == n_pairs[a_gemv] - 1;
                    a_valid <= 1;
                    a_pair = a_pair + 1;
                    if (a_pair == n_pairs[a_gemv]) begin
                        a_pair = 0;
                        a_block = a_block + 1;
                        if (a_block == n_blocks[a_gemv]) begin
                            a_block = 0;
                            a_gemv = a_gemv + 1;
                            if (a_gemv < n_gemv) load_act(a_gemv);
                        end
                    end
                end else a_valid <= 0;
            end
            // Requantization parameters: one beat per column block.
            if (REQUANT && (!p_valid || p_ready)) begin
                if (p_gemv < n_gemv && passes(lfsr_p, idle_threshold)) begin
                    unused = $fscanf(fd_p, "%h\n", pword);
                    p_data <= pword;
                    p_valid <= 1;
                    p_block = p_block + 1;
                    if (p_block == n_blocks[p_gemv]) begin
                        p_block = 0;
                        p_gemv = p_gemv + 1;
                    end
                end else p_valid <= 0;
            end
            // Results: written as taken; backpressure from the LFSR.
            r_ready <= passes(lfsr_r, backpressure_threshold);
            if (r_valid && r_ready) begin
                $fwrite(fd_r, "%h %0d\n", r_data, r_last);
                if (r_last) begin
                    $fwrite(fd_c, "end %0d %0d\n", r_gemv, cycle);
                    r_gemv = r_gemv + 1;
                    if (r_gemv == n_gemv) begin
                        done <= 1;
                        $fflush(fd_r);
                        $fflush(fd_c);
                    end
                end
            end
            if (max_cycles > 0 && cycle >= longint'(max_cycles)) begin
                $fwrite(fd_c, "timeout %0d %0d\n", r_gemv, cycle);
                $fflush(fd_r);
                $fflush(fd_c);
                timed_out <= 1;
                done <= 1;
            end
        end
    end
endmodule
